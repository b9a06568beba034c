//! Markdown → sanitized HTML for assistant answers. pulldown-cmark renders (raw HTML in the input
//! included), then ammonia removes everything that could run script: tags and attributes outside
//! its allow-list, event handlers, `javascript:` and other non-web URL schemes.
//!
//! On the way, answers are made fit for a page that fetches nothing by itself: an image becomes
//! a link to it (its alt text after 🖼), links open in a new tab with `rel="noopener noreferrer"`,
//! code blocks are highlighted on the server with CSS classes (`hl-…`; the CSP allows no inline
//! styles) under a header with their language and a Copy button, tables sit in a box that
//! scrolls sideways and keep their column alignment as classes.
//!
//! While an answer streams, [`Progressive`] renders each finished top-level block once and only
//! the last, still growing block again.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::OnceLock;

use ammonia::Builder;
use pulldown_cmark::{
    Alignment, CodeBlockKind, CowStr, Event, LinkType, Options, Parser, Tag, TagEnd, html,
};
use syntect::html::{ClassStyle, ClassedHTMLGenerator};
use syntect::parsing::SyntaxSet;
use syntect::util::LinesWithEndings;

/// The classes this renderer emits; a class attribute keeps only these (anything else, e.g. in
/// the raw HTML of an answer, is dropped).
fn allowed_class(element: &str, class: &str) -> bool {
    match element {
        "span" => class.starts_with("hl-") || class == "code-lang",
        "div" => matches!(class, "code-block" | "code-head" | "table-wrap"),
        "th" | "td" => matches!(class, "align-left" | "align-center" | "align-right"),
        _ => false,
    }
}

fn filter_attribute<'u>(element: &str, attribute: &str, value: &'u str) -> Option<Cow<'u, str>> {
    match attribute {
        "class" => {
            let kept: Vec<&str> = value
                .split_ascii_whitespace()
                .filter(|class| allowed_class(element, class))
                .collect();
            (!kept.is_empty()).then(|| kept.join(" ").into())
        }
        _ => Some(value.into()),
    }
}

fn sanitizer() -> &'static Builder<'static> {
    static SANITIZER: OnceLock<Builder<'static>> = OnceLock::new();
    SANITIZER.get_or_init(|| {
        let mut builder = Builder::default();
        builder
            .link_rel(Some("noopener noreferrer"))
            .set_tag_attribute_value("a", "target", "_blank")
            .url_schemes(HashSet::from(["http", "https", "mailto"]))
            // Nothing in an answer is fetched without the reader asking: images in Markdown
            // became links before this; raw `<img>` tags go.
            .rm_tags(["img"].iter().copied())
            // No form controls at all: an answer must not be able to pose as a page asking for
            // a password. Task lists become ☑/☐ text, and code.js adds the Copy buttons.
            .add_tag_attributes("span", ["class"].iter().copied())
            .add_tag_attributes("div", ["class"].iter().copied())
            .add_tag_attributes("th", ["class"].iter().copied())
            .add_tag_attributes("td", ["class"].iter().copied())
            .attribute_filter(filter_attribute);
        builder
    })
}

/// The grammars syntect ships, loaded by the first code block with a language (parsing them
/// takes tens of milliseconds and keeps 1.1 MB).
static SYNTAXES: OnceLock<SyntaxSet> = OnceLock::new();

fn syntaxes() -> &'static SyntaxSet {
    SYNTAXES.get_or_init(SyntaxSet::load_defaults_newlines)
}

/// Minimal HTML escaping for text placed into markup.
fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// `code` highlighted as `language` (a name or file extension, e.g. `rust` or `py`), as spans
/// with `hl-` classes; `None` for a language syntect does not know.
fn highlighted(language: &str, code: &str) -> Option<String> {
    let syntaxes = syntaxes();
    let syntax = syntaxes.find_syntax_by_token(language)?;
    let mut generator = ClassedHTMLGenerator::new_with_class_style(
        syntax,
        syntaxes,
        ClassStyle::SpacedPrefixed { prefix: "hl-" },
    );
    for line in LinesWithEndings::from(code) {
        generator
            .parse_html_for_line_which_includes_newline(line)
            .ok()?;
    }
    Some(generator.finalize())
}

/// A fenced or indented code block: a header with its language and a Copy button, then the code,
/// highlighted when its language is known and plain escaped text otherwise.
fn code_block(info: &str, code: &str) -> String {
    // The info string's first word names the language (`rust,ignore` or `python title=x` too).
    let language = info
        .split(|c: char| c.is_whitespace() || c == ',')
        .next()
        .unwrap_or_default();
    let mut out = String::with_capacity(code.len() * 2 + 160);
    out.push_str("<div class=\"code-block\"><div class=\"code-head\">");
    if !language.is_empty() {
        out.push_str("<span class=\"code-lang\">");
        escape_into(&mut out, language);
        out.push_str("</span>");
    }
    out.push_str("</div><pre><code>");
    match (!language.is_empty())
        .then(|| highlighted(language, code))
        .flatten()
    {
        Some(spans) => out.push_str(&spans),
        None => escape_into(&mut out, code),
    }
    out.push_str("</code></pre></div>\n");
    out
}

fn alignment_class(alignment: Option<&Alignment>) -> &'static str {
    match alignment {
        Some(Alignment::Left) => " class=\"align-left\"",
        Some(Alignment::Center) => " class=\"align-center\"",
        Some(Alignment::Right) => " class=\"align-right\"",
        Some(Alignment::None) | None => "",
    }
}

fn options() -> Options {
    Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES
}

/// pulldown-cmark's events with confab's changes: code blocks, images, table boxes and cell
/// alignment (pulldown-cmark writes alignment as a `style` attribute, which the CSP would drop).
fn events(markdown: &str) -> Vec<Event<'_>> {
    let mut out = Vec::new();
    let mut code: Option<(CowStr, String)> = None;
    let mut alignments = Vec::new();
    let mut cell = 0;
    let mut in_head = false;
    let mut image_text_at = None;
    for event in Parser::new_ext(markdown, options()) {
        match event {
            Event::Start(Tag::CodeBlock(kind)) => {
                let info = match kind {
                    CodeBlockKind::Fenced(info) => info,
                    CodeBlockKind::Indented => CowStr::Borrowed(""),
                };
                code = Some((info, String::new()));
            }
            Event::Text(text) if code.is_some() => {
                if let Some((_, body)) = &mut code {
                    body.push_str(&text);
                }
            }
            Event::End(TagEnd::CodeBlock) => {
                if let Some((info, body)) = code.take() {
                    out.push(Event::Html(code_block(&info, &body).into()));
                }
            }
            Event::Start(Tag::Image {
                dest_url, title, ..
            }) => {
                out.push(Event::Start(Tag::Link {
                    link_type: LinkType::Inline,
                    dest_url,
                    title,
                    id: CowStr::Borrowed(""),
                }));
                out.push(Event::Text("🖼 ".into()));
                image_text_at = Some(out.len());
            }
            Event::End(TagEnd::Image) => {
                if image_text_at.take() == Some(out.len()) {
                    out.push(Event::Text("image".into()));
                }
                out.push(Event::End(TagEnd::Link));
            }
            Event::TaskListMarker(done) => {
                out.push(Event::Text(if done { "☑ " } else { "☐ " }.into()));
            }
            Event::Start(Tag::Table(columns)) => {
                alignments = columns;
                out.push(Event::Html("<div class=\"table-wrap\">".into()));
                out.push(Event::Start(Tag::Table(Vec::new())));
            }
            Event::End(TagEnd::Table) => {
                out.push(Event::End(TagEnd::Table));
                out.push(Event::Html("</div>\n".into()));
            }
            Event::Start(Tag::TableHead) => {
                in_head = true;
                cell = 0;
                out.push(event);
            }
            Event::End(TagEnd::TableHead) => {
                in_head = false;
                out.push(event);
            }
            Event::Start(Tag::TableRow) => {
                cell = 0;
                out.push(event);
            }
            Event::Start(Tag::TableCell) => {
                let tag = if in_head { "th" } else { "td" };
                let class = alignment_class(alignments.get(cell));
                out.push(Event::Html(format!("<{tag}{class}>").into()));
            }
            Event::End(TagEnd::TableCell) => {
                out.push(Event::Html(if in_head { "</th>" } else { "</td>" }.into()));
                cell += 1;
            }
            event => out.push(event),
        }
    }
    out
}

/// Renders a Markdown answer (tables, strikethrough, task lists, footnotes) to safe HTML.
pub fn to_safe_html(markdown: &str) -> String {
    let mut raw = String::with_capacity(markdown.len() * 3 / 2);
    html::push_html(&mut raw, events(markdown).into_iter());
    sanitizer().clean(&raw).to_string()
}

/// Names the renderer that is running: stored HTML made by another is rendered again. It
/// changes with confab's version and with a digest, taken at build time (build.rs), of this
/// file's code and of the crates and features it is built with: nothing is rendered to find it
/// out, so syntect's grammars are loaded only by an answer with a code block.
pub fn renderer_version() -> &'static str {
    concat!(
        env!("CARGO_PKG_VERSION"),
        ".",
        env!("MARKDOWN_RENDERER_DIGEST")
    )
}

/// Where the settled part of a growing Markdown text ends, searching from `from` (an earlier
/// answer for a shorter prefix of it, or 0): the start of the line where its last top-level block
/// begins. Every block before that one is followed by another, so appending text leaves it as it
/// is; the last one may still grow — a paragraph, a list, a code fence not yet closed (which
/// runs to the end of the text). Only the complete lines of `markdown[from..]` are parsed: a
/// line cut short can look like the end of a block it will turn out to continue (`|` after a
/// table is not yet a row).
pub fn settled_end(markdown: &str, from: usize) -> usize {
    let rest = &markdown[from..];
    let rest = &rest[..rest.rfind('\n').map_or(0, |newline| newline + 1)];
    let mut depth = 0usize;
    let mut last_start = 0;
    for (event, range) in Parser::new_ext(rest, options()).into_offset_iter() {
        match event {
            Event::Start(_) => {
                if depth == 0 {
                    last_start = range.start;
                }
                depth += 1;
            }
            Event::End(_) => depth = depth.saturating_sub(1),
            // Blocks without a start and end of their own (a thematic break, raw HTML).
            _ if depth == 0 => last_start = range.start,
            _ => {}
        }
    }
    let line_start = rest[..last_start]
        .rfind('\n')
        .map_or(0, |newline| newline + 1);
    from + line_start
}

/// A Markdown answer rendered while it is being written, without rendering it all again for
/// each piece: [`Progressive::render`] returns the blocks that settled since its last call
/// (rendered once, to be appended) and the last block (to replace the previous one).
#[derive(Debug, Default)]
pub struct Progressive {
    settled: usize,
}

impl Progressive {
    /// `text` is the whole answer so far; it only grows between calls.
    pub fn render(&mut self, text: &str) -> (String, String) {
        let end = settled_end(text, self.settled);
        let settled = if end > self.settled {
            to_safe_html(&text[self.settled..end])
        } else {
            String::new()
        };
        self.settled = end;
        (settled, to_safe_html(&text[end..]))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Set in the environment of a test run by [`in_a_fresh_process`].
    const CHILD: &str = "MARKDOWN_TEST_CHILD";

    /// Runs one (ignored) test of this module alone in a new process of this test binary, so
    /// that what it checks about process-wide state is not disturbed by the tests beside it.
    fn in_a_fresh_process(test: &str) {
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                &format!("render::markdown::tests::{test}"),
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .env(CHILD, "1")
            .output()
            .unwrap();
        assert!(
            output.status.success() && String::from_utf8_lossy(&output.stdout).contains("1 passed"),
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Grammars cost 1.1 MB once loaded: an answer without a code block must not load them, and
    /// neither must naming the renderer (it once rendered a highlighted sample to digest it).
    #[test]
    fn grammars_are_loaded_by_the_first_highlighted_block_only() {
        in_a_fresh_process("grammars_are_loaded_by_the_first_highlighted_block_only_child");
    }

    #[test]
    #[ignore = "run alone, in a process of its own, by the test above"]
    fn grammars_are_loaded_by_the_first_highlighted_block_only_child() {
        // `cargo test -- --ignored` runs it beside others, which may load the grammars.
        if std::env::var_os(CHILD).is_none() {
            return;
        }
        assert!(!renderer_version().is_empty());
        to_safe_html("Some *emphasis* and `code`.\n\n```\nplain\n```\n\n| a |\n|---|\n| 1 |\n");
        let mut progressive = Progressive::default();
        progressive.render("A list:\n\n- one\n- two\n");
        assert!(
            SYNTAXES.get().is_none(),
            "grammars loaded without a highlighted block"
        );
        to_safe_html("```rust\nfn main() {}\n```");
        assert!(SYNTAXES.get().is_some());
    }

    /// The version names this build's renderer: confab's version and build.rs's digest.
    #[test]
    fn the_renderer_version_is_the_package_version_and_a_digest() {
        let version = renderer_version();
        let (package, digest) = version.rsplit_once('.').unwrap();
        assert_eq!(package, env!("CARGO_PKG_VERSION"));
        assert_eq!(digest.len(), 12);
        assert!(digest.bytes().all(|b| b.is_ascii_hexdigit()), "{version}");
    }

    #[test]
    fn renders_the_usual_markdown() {
        let html = to_safe_html(
            "# Title\n\n- one\n- two\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n```rust\nfn main() {}\n```\n\n~~old~~ **bold**",
        );
        assert!(html.contains("<h1>Title</h1>"));
        assert!(html.contains("<li>one</li>"));
        assert!(html.contains("<table>") && html.contains("<td>1</td>"));
        assert!(html.contains("<pre><code>"), "{html}");
        assert!(html.contains(">main</span>"), "{html}");
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
    fn task_lists_render_as_ticked_and_open_boxes() {
        let html = to_safe_html("- [x] done\n- [ ] todo");
        assert!(
            html.contains("<li>☑ done</li>") && html.contains("<li>☐ todo</li>"),
            "{html}"
        );
    }

    #[test]
    fn an_answer_cannot_pose_as_a_form() {
        let html = to_safe_html(
            "Sign in again: <input type=\"password\"> <input type=\"checkbox\" checked> \
             <button>Continue</button> <select><option>x</option></select> <textarea>t</textarea>",
        );
        for control in ["<input", "<button", "<select", "<textarea"] {
            assert!(!html.contains(control), "{control} survived: {html}");
        }
    }

    #[test]
    fn text_that_looks_like_html_inside_code_stays_text() {
        let html = to_safe_html("`<b>not bold</b>`");
        assert!(html.contains("&lt;b&gt;not bold&lt;/b&gt;"), "{html}");
    }
    #[test]
    fn images_become_links_to_them_and_nothing_is_fetched() {
        let html = to_safe_html(
            "![a cat](https://example.com/cat.png \"Cat\") and ![](/x.png)\n\n<img src=x onerror=alert(1)> <img src=\"/logout\">",
        );
        assert!(!html.contains("<img"), "{html}");
        assert!(
            html.contains("href=\"https://example.com/cat.png\"") && html.contains(">🖼 a cat</a>"),
            "{html}"
        );
        assert!(
            html.contains("href=\"/x.png\"") && html.contains(">🖼 image</a>"),
            "{html}"
        );
    }

    #[test]
    fn links_open_in_a_new_tab() {
        let html =
            to_safe_html("[docs](https://example.com/docs) <a href=\"/x\" target=\"_self\">x</a>");
        assert_eq!(html.matches("target=\"_blank\"").count(), 2, "{html}");
        assert!(!html.contains("_self"), "{html}");
    }

    #[test]
    fn code_blocks_are_highlighted_with_classes_under_a_header() {
        let html = to_safe_html("```rust\nfn main() { let x = \"s\"; }\n```");
        assert!(
            html.contains("<div class=\"code-head\"><span class=\"code-lang\">rust</span></div>"),
            "{html}"
        );
        assert!(
            html.contains("<span class=\"hl-source hl-rust\">"),
            "{html}"
        );
        assert!(
            html.contains("class=\"hl-storage hl-type hl-function hl-rust\""),
            "{html}"
        );
        assert!(!html.contains("style="), "{html}");
    }

    #[test]
    fn code_stays_escaped_highlighted_or_not() {
        for fence in ["```html", "```", "```no-such-language", "    "] {
            let indent = if fence.trim().is_empty() { fence } else { "" };
            let end = if indent.is_empty() { "```" } else { "" };
            let html = to_safe_html(&format!(
                "{fence}\n{indent}<script>alert(1)</script> & <b>x</b>\n{end}"
            ));
            assert!(
                !html.contains("<script") && !html.contains("<b>"),
                "{fence}: {html}"
            );
            assert!(
                html.contains("&lt;script") || html.contains("&lt;</span>"),
                "{fence}: {html}"
            );
            assert!(html.contains("class=\"code-head\""), "{fence}: {html}");
        }
        let plain = to_safe_html("```no-such-language\n<b>x</b>\n```");
        assert!(
            plain.contains("<code>&lt;b&gt;x&lt;/b&gt;\n</code>"),
            "{plain}"
        );
        assert!(plain.contains("code-lang\">no-such-language<"), "{plain}");
    }

    #[test]
    fn only_the_renderers_own_classes_survive() {
        let html = to_safe_html(
            "<span class=\"hl-keyword evil\">a</span><div class=\"table-wrap x\">b</div>\
             <p class=\"code-block\">c</p><button type=\"submit\" class=\"other\">d</button>",
        );
        assert!(
            html.contains("<span class=\"hl-keyword\">a</span>"),
            "{html}"
        );
        assert!(html.contains("<div class=\"table-wrap\">b</div>"), "{html}");
        assert!(
            html.contains("<p>c</p>") && !html.contains("<button"),
            "{html}"
        );
    }

    #[test]
    fn tables_scroll_in_a_box_and_keep_their_alignment_as_classes() {
        let html = to_safe_html("| a | b | c | d |\n|:--|:-:|--:|---|\n| 1 | 2 | 3 | 4 |");
        assert!(
            html.starts_with("<div class=\"table-wrap\"><table>"),
            "{html}"
        );
        for cell in [
            "<th class=\"align-left\">a</th>",
            "<th class=\"align-center\">b</th>",
            "<th class=\"align-right\">c</th>",
            "<th>d</th>",
            "<td class=\"align-left\">1</td>",
            "<td class=\"align-center\">2</td>",
            "<td class=\"align-right\">3</td>",
            "<td>4</td>",
        ] {
            assert!(html.contains(cell), "{cell} missing: {html}");
        }
        assert!(!html.contains("style"), "{html}");
    }

    #[test]
    fn the_last_top_level_block_is_the_tail() {
        let tail = |text: &str| text[settled_end(text, 0)..].to_string();
        assert_eq!(
            tail("# Title\n\nA paragraph\nstill.\n\nLast one\n"),
            "Last one\n"
        );
        // One block only, or text ending in blank lines: nothing settled yet.
        assert_eq!(settled_end("Just one\n\n", 0), 0);
        // A list is one block however many items and blank lines it has, until something else.
        let list = "Intro\n\n- a\n- b\n\n- c\n";
        assert_eq!(tail(list), "- a\n- b\n\n- c\n");
        let after = format!("{list}\nAfter\n");
        assert_eq!(tail(&after), "After\n");
        // A fence not yet closed runs to the end, blank lines and all.
        let open = "Intro\n\n```rust\nfn a() {}\n\n\nfn b";
        assert_eq!(tail(open), "```rust\nfn a() {}\n\n\nfn b");
        // A closed fence is still the tail until another block begins.
        assert_eq!(tail("Intro\n\n```\ncode\n```\n"), "```\ncode\n```\n");
        // A thematic break is a block too.
        assert_eq!(tail("a\n\n---\n\nb\n"), "b\n");
        // A line cut short belongs to the block before it (`|` will be a row of this table).
        assert_eq!(
            tail("Intro\n\n| a |\n|---|\n| 1 |\n|"),
            "| a |\n|---|\n| 1 |\n|"
        );
        // Searching from an earlier answer gives the same as from the start.
        let earlier = settled_end(&after[..20], 0);
        assert_eq!(settled_end(&after, earlier), settled_end(&after, 0));
    }

    #[test]
    fn progressive_rendering_adds_up_to_the_whole_render() {
        let text = "# Plan\n\nSome **bold** text.\n\n```python\nprint(\"<hi>\")\n\nx = 1\n```\n\n\
                    1. one\n2. two\n\n| a | b |\n|:-:|--:|\n| 1 | 2 |\n\nThe end.";
        let mut progressive = Progressive::default();
        let mut settled = String::new();
        let mut tail = String::new();
        // Piece by piece, as tokens arrive (every character boundary).
        for end in (1..=text.len()).filter(|&i| text.is_char_boundary(i)) {
            let (new, last) = progressive.render(&text[..end]);
            settled.push_str(&new);
            tail = last;
        }
        assert_eq!(settled + &tail, to_safe_html(text));
    }
}
