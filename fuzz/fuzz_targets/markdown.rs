//! Any text as an answer's Markdown: rendering never panics, and what comes out is sanitized
//! (no script, no event handler, no `javascript:` URL survives).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let html = confab::render::markdown::to_safe_html(text).to_ascii_lowercase();
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains("javascript:"), "{html}");
    assert!(!html.contains(" onerror="), "{html}");
});
