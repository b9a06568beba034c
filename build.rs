// Re-embed migrations and templates whenever they change (diesel_migrations and askama read them at compile time).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=templates");
    println!("cargo:rerun-if-changed=static");
    renderer_digest();
}

/// The Markdown renderer's version (`render::markdown::renderer_version`) digests what decides its
/// output: its own source and the locked versions of the crates it uses. It is computed here
/// rather than by rendering a sample at run time, which loaded syntect's grammars (1.1 MB) into
/// every confab at its first answer, code block or not. The whole lock file is digested: a
/// dependency update that does not touch the renderer costs a re-render of stored answers on
/// their next view, while a narrower list could miss one that does (html5ever under ammonia).
fn renderer_digest() {
    use sha2::Digest as _;
    const INPUTS: [&str; 2] = ["src/render/markdown.rs", "Cargo.lock"];
    let mut digest = sha2::Sha256::new();
    for input in INPUTS {
        println!("cargo:rerun-if-changed={input}");
        let bytes = std::fs::read(input).unwrap_or_else(|e| panic!("reading {input}: {e}"));
        digest.update(input.as_bytes());
        digest.update(bytes.len().to_le_bytes());
        digest.update(&bytes);
    }
    // Not named CONFAB_…: cargo also sets it in the environment of `cargo test` and `cargo
    // run`, and a confab started from there would read it as one of its settings.
    println!(
        "cargo:rustc-env=MARKDOWN_RENDERER_DIGEST={}",
        hex::encode(&digest.finalize()[..6])
    );
}
