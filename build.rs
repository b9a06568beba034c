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
    digest.update(env(SYSTEM_ONIG).as_bytes());
    // Not named CONFAB_…: cargo also sets it in the environment of `cargo test` and `cargo
    // run`, and a confab started from there would read it as one of its settings.
    println!(
        "cargo:rustc-env=MARKDOWN_RENDERER_DIGEST={}",
        hex::encode(&digest.finalize()[..6])
    );
}

/// How a release confab is linked, for less memory.
///
/// - Code placed by use. A release confab's code is 16 MB, of which an ordinary run uses under
///   4 MB, spread over all of it; the kernel maps code in pieces of 64 kB around each page used,
///   so a run kept 10-12 MB of code resident. `linker/code-order.txt` (written by
///   `scripts/code-order.sh`) lists the functions an ordinary run uses, and the linker places them
///   first, together. A function missing from the list (new code, a renamed one) is placed with
///   the rest: a list gone stale costs memory, never correctness.
/// - Relocations packed (DT_RELR): the 1.6 MB table of addresses to fix at start, read whole by
///   every start, becomes 26 kB. Only when building for this machine with glibc 2.36 or later:
///   the C library that runs confab must apply them, and one older than the build's refuses to
///   start it anyway.
///
/// Both are options of LLD (Rust's default linker for x86_64 Linux since 1.90) that GNU ld does
/// not take, and the linker may be another (a distribution's rustc, `-C linker=`, a target's
/// `linker` in cargo's config). So a tiny program is linked with them first, with the same
/// compiler, flags and linker: a release build without them is larger, one that fails to link
/// would be worse.
fn release_link() {
    const ORDER: &str = "linker/code-order.txt";
    println!("cargo:rerun-if-changed={ORDER}");
    if env("PROFILE") != "release" {
        return;
    }
    let order = std::path::Path::new(&env("CARGO_MANIFEST_DIR")).join(ORDER);
    if !order.is_file() {
        println!("cargo:warning={ORDER} is missing: confab is linked without code placed by use");
        return;
    }
    let mut args = vec![
        format!("-Wl,--symbol-ordering-file={}", order.display()),
        "-Wl,--no-warn-symbol-ordering".to_string(),
    ];
    let native = env("HOST") == env("TARGET");
    if native && glibc_version().is_some_and(|version| version >= (2, 36)) {
        args.push("-Wl,-z,pack-relative-relocs".to_string());
    }
    if !links_with(&args) {
        println!(
            "cargo:warning=the linker does not take LLD's --symbol-ordering-file: confab is \
             linked without code placed by use (about 8 MB more resident)"
        );
        return;
    }
    for arg in args {
        println!("cargo:rustc-link-arg-bin=confab={arg}");
    }
}

/// Whether an empty program links with these arguments, built as cargo builds confab.
fn links_with(link_args: &[String]) -> bool {
    let out_dir = std::path::PathBuf::from(env("OUT_DIR"));
    let source = out_dir.join("link_probe.rs");
    if std::fs::write(&source, "fn main() {}\n").is_err() {
        return false;
    }
    let mut rustc = std::process::Command::new(env("RUSTC"));
    rustc
        .args(["--crate-type", "bin", "--target", &env("TARGET"), "-o"])
        .arg(out_dir.join("link_probe"))
        .arg(&source)
        .args(
            env("CARGO_ENCODED_RUSTFLAGS")
                .split('\x1f')
                .filter(|flag| !flag.is_empty()),
        )
        .args(link_args.iter().map(|arg| format!("-Clink-arg={arg}")));
    if let Ok(linker) = std::env::var("RUSTC_LINKER") {
        rustc.arg(format!("-Clinker={linker}"));
    }
    rustc
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// An environment variable of the build script, or "" when it is not set.
fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

/// `(2, 36)` for glibc 2.36, the C library this machine builds against.
fn glibc_version() -> Option<(u32, u32)> {
    let output = std::process::Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let mut numbers = text.trim().strip_prefix("glibc ")?.split('.');
    Some((numbers.next()?.parse().ok()?, numbers.next()?.parse().ok()?))
}
