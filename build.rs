// Re-embed migrations and templates whenever they change (diesel_migrations and askama read them at compile time).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=templates");
    println!("cargo:rerun-if-changed=static");
    renderer_digest();
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
