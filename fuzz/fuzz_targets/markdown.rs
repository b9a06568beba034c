//! Any text as an answer's Markdown: rendering never panics, and what comes out is sanitized —
//! no `script` or `img` element, no event-handler attribute, no `javascript:` link or source. (Such words
//! as escaped text, e.g. inside a code block, are harmless and allowed.)
#![no_main]

use libfuzzer_sys::fuzz_target;

/// The attribute names and values of one tag's inside (`a href="x" title='y z'`).
fn attributes(tag: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = tag.chars().peekable();
    // Skip the element name.
    while chars.peek().is_some_and(|c| !c.is_whitespace()) {
        chars.next();
    }
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == '/') {
            chars.next();
        }
        let name: String = std::iter::from_fn(|| {
            chars.next_if(|c| !c.is_whitespace() && *c != '=' && *c != '/')
        })
        .collect();
        if name.is_empty() {
            return out;
        }
        let mut value = String::new();
        if chars.next_if_eq(&'=').is_some() {
            match chars.next_if(|c| *c == '"' || *c == '\'') {
                Some(quote) => value.extend(std::iter::from_fn(|| chars.next_if(|c| *c != quote))),
                None => value.extend(std::iter::from_fn(|| chars.next_if(|c| !c.is_whitespace()))),
            }
            chars.next();
        }
        out.push((name.to_ascii_lowercase(), value.to_ascii_lowercase()));
    }
}

fuzz_target!(|text: &str| {
    let html = confab::render::markdown::to_safe_html(text);
    for tag in html.split('<').skip(1).filter_map(|rest| rest.split('>').next()) {
        let lower = tag.to_ascii_lowercase();
        assert!(!lower.starts_with("script"), "a script element: {html}");
        assert!(!lower.starts_with("img"), "an image, fetched by itself: {html}");
        for (name, value) in attributes(tag) {
            assert!(!name.starts_with("on"), "an event handler `{name}`: {html}");
            let value: String = value.chars().filter(|c| !c.is_whitespace()).collect();
            assert!(!value.starts_with("javascript:"), "a javascript: URL: {html}");
        }
    }
});
