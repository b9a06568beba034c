// Re-embed migrations and templates whenever they change (diesel_migrations and askama read them at compile time).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=templates");
    println!("cargo:rerun-if-changed=static");
    renderer_digest();
    release_link();
}

/// The Markdown renderer's version (`render::markdown::renderer_version`) digests what decides its
/// output: its own code, the locked versions of the crates it uses and the features they are
/// built with. It is computed here rather than by rendering a sample at run time, which loaded
/// syntect's grammars (1.1 MB) into every confab at its first answer, code block or not. The whole
/// lock file and manifest are digested: a dependency update that does not touch the renderer
/// costs a re-render of stored answers on their next view, while a narrower list could miss one
/// that does (html5ever under ammonia). The renderer's tests are left out: editing them changes
/// no output.
fn renderer_digest() {
    use sha2::Digest as _;
    const RENDERER: &str = "src/render/markdown.rs";
    const INPUTS: [&str; 3] = [RENDERER, "Cargo.lock", "Cargo.toml"];
    // Oniguruma from the system instead of the one built in (onig_sys) is another regex engine.
    const SYSTEM_ONIG: &str = "RUSTONIG_SYSTEM_LIBONIG";
    let mut digest = sha2::Sha256::new();
    for input in INPUTS {
        println!("cargo:rerun-if-changed={input}");
        let text =
            std::fs::read_to_string(input).unwrap_or_else(|e| panic!("reading {input}: {e}"));
        let text = match input {
            RENDERER => text
                .split_once("\n#[cfg(test)]")
                .map_or(&*text, |(code, _)| code),
            _ => &text,
        };
        digest.update(input.as_bytes());
        digest.update(text.len().to_le_bytes());
        digest.update(text.as_bytes());
    }
    println!("cargo:rerun-if-env-changed={SYSTEM_ONIG}");
    digest.update(std::env::var(SYSTEM_ONIG).unwrap_or_default().as_bytes());
    // Not named CONFAB_…: cargo also sets it in the environment of `cargo test` and `cargo
    // run`, and a confab started from there would read it as one of its settings.
    println!(
        "cargo:rustc-env=MARKDOWN_RENDERER_DIGEST={}",
        hex::encode(&digest.finalize()[..6])
    );
}

/// How a release confab is linked, for less memory; only where the linker is known to be LLD
/// (Rust's default for this target since 1.90: GNU ld takes neither option, and a link that fails
/// would be worse than a confab that is larger).
///
/// - Code placed by use. A release confab's code is 16 MB, of which an ordinary run uses under
///   4 MB, spread over all of it; the kernel maps code in pieces of 64 kB around each page used,
///   so a run kept 10-12 MB of code resident. `linker/code-order.txt` (written by
///   `scripts/code-order.sh`) lists the functions an ordinary run uses, and the linker places them
///   first, together. A function missing from the list (new code, a renamed one) is placed with
///   the rest: a list gone stale costs memory, never correctness.
/// - Relocations packed (DT_RELR): the 1.6 MB table of addresses to fix at start, read whole by
///   every start, becomes 21 kB. Only when the C library it is built against (and so the one it
///   runs with, in the container) is glibc 2.36 or later, which applies them.
fn release_link() {
    const ORDER: &str = "linker/code-order.txt";
    println!("cargo:rerun-if-changed={ORDER}");
    println!("cargo:rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    let env = |name: &str| std::env::var(name).unwrap_or_default();
    let lld = env("TARGET") == "x86_64-unknown-linux-gnu"
        && env("HOST") == env("TARGET")
        && version_of(&env("RUSTC"), &["-vV"], "release: ").is_some_and(|v| v >= (1, 90))
        // A linker chosen by hand (`-C linker=`, `-C link-arg=-fuse-ld=…`) may be another one.
        && !env("CARGO_ENCODED_RUSTFLAGS").contains("link");
    if env("PROFILE") != "release" || !lld {
        return;
    }
    let order = std::path::Path::new(&env("CARGO_MANIFEST_DIR")).join(ORDER);
    let link_arg = |arg: &str| println!("cargo:rustc-link-arg-bin=confab={arg}");
    link_arg(&format!("-Wl,--symbol-ordering-file={}", order.display()));
    link_arg("-Wl,--no-warn-symbol-ordering");
    if version_of("getconf", &["GNU_LIBC_VERSION"], "glibc ").is_some_and(|v| v >= (2, 36)) {
        link_arg("-Wl,-z,pack-relative-relocs");
    }
}

/// `(1, 90)` from the line of `program args` that starts with `prefix` ("release: 1.90.0").
fn version_of(program: &str, args: &[&str], prefix: &str) -> Option<(u32, u32)> {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let version = text.lines().find_map(|line| line.strip_prefix(prefix))?;
    let mut numbers = version.trim().split('.').map(|n| n.parse().ok());
    Some((numbers.next()??, numbers.next()??))
}
