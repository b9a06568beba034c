//! Markdown → sanitized HTML for assistant answers. pulldown-cmark renders (raw HTML in the input
//! included), then ammonia removes everything that could run script: tags and attributes outside
//! its allow-list, event handlers, `javascript:` and other non-web URL schemes. Links open with
//! `rel="noopener noreferrer"`.

use std::collections::HashSet;
use std::sync::OnceLock;

use ammonia::Builder;
use pulldown_cmark::{Options, Parser, html};

fn sanitizer() -> &'static Builder<'static> {
    static SANITIZER: OnceLock<Builder<'static>> = OnceLock::new();
    SANITIZER.get_or_init(|| {
        let mut builder = Builder::default();
        builder
            .link_rel(Some("noopener noreferrer"))
            .url_schemes(HashSet::from(["http", "https", "mailto"]))
            // Task lists render as disabled checkboxes.
            .add_tag_attributes("input", ["type", "checked", "disabled"].iter().copied())
            .add_tags(["input"].iter().copied());
        builder
    })
}

/// The words of a Markdown text without its markup (for titles): emphasis, code fences, links
/// and raw HTML tags go, their text stays.
pub fn plain_text(markdown: &str) -> String {
    use pulldown_cmark::{Event, Tag, TagEnd};
    let mut out = String::new();
    for event in Parser::new_ext(
        markdown,
        Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TABLES,
    ) {
        match event {
            Event::Text(text) | Event::Code(text) => out.push_str(&text),
            // Inline markup joins words as they were; blocks and breaks separate them.
            Event::Start(
                Tag::Emphasis
                | Tag::Strong
                | Tag::Strikethrough
                | Tag::Link { .. }
                | Tag::Image { .. },
            )
            | Event::End(
                TagEnd::Emphasis
                | TagEnd::Strong
                | TagEnd::Strikethrough
                | TagEnd::Link
                | TagEnd::Image,
            ) => {}
            Event::SoftBreak | Event::HardBreak | Event::Start(_) | Event::End(_) => out.push(' '),
            _ => {}
        }
    }
    out
}

/// Renders a Markdown answer (tables, strikethrough, task lists, footnotes) to safe HTML.
pub fn to_safe_html(markdown: &str) -> String {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES;
    let mut raw = String::with_capacity(markdown.len() * 3 / 2);
    html::push_html(&mut raw, Parser::new_ext(markdown, options));
    sanitizer().clean(&raw).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_usual_markdown() {
        let html = to_safe_html(
            "# Title\n\n- one\n- two\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n```rust\nfn main() {}\n```\n\n~~old~~ **bold**",
        );
        assert!(html.contains("<h1>Title</h1>"));
        assert!(html.contains("<li>one</li>"));
        assert!(html.contains("<table>") && html.contains("<td>1</td>"));
        assert!(html.contains("<pre><code"), "{html}");
        assert!(html.contains("fn main() {}"));
        assert!(html.contains("<del>old</del>") && html.contains("<strong>bold</strong>"));
    }

    #[test]
    fn strips_script_handlers_and_javascript_links() {
        let html = to_safe_html(
            "<script>alert(1)</script>\n\n<img src=x onerror=alert(2)>\n\n[click](javascript:alert(3)) \
             <a href=\"javascript:alert(4)\">x</a> <iframe src=\"https://evil.example\"></iframe> \
             <div style=\"background:url(javascript:alert(5))\" onclick=\"alert(6)\">d</div>",
        );
        for bad in [
            "<script",
            "alert(1)",
            "onerror",
            "javascript:",
            "<iframe",
            "onclick",
            "style=",
        ] {
            assert!(!html.contains(bad), "{bad} survived: {html}");
        }
    }

    #[test]
    fn links_get_noopener_noreferrer() {
        let html = to_safe_html("[docs](https://example.com/docs)");
        assert!(html.contains("href=\"https://example.com/docs\""));
        assert!(html.contains("rel=\"noopener noreferrer\""), "{html}");
    }

    #[test]
    fn task_lists_render_as_checkboxes() {
        let html = to_safe_html("- [x] done\n- [ ] todo");
        assert!(
            html.contains("type=\"checkbox\"") && html.contains("checked"),
            "{html}"
        );
    }

    #[test]
    fn text_that_looks_like_html_inside_code_stays_text() {
        let html = to_safe_html("`<b>not bold</b>`");
        assert!(html.contains("&lt;b&gt;not bold&lt;/b&gt;"), "{html}");
    }
}
