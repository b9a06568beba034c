-- A finished answer rendered once, when it ends: its Markdown as sanitized HTML (what pages show,
-- instead of rendering it on every view) and which renderer made it, so HTML made by an older
-- confab is rendered again. Rows from before this stay NULL and are filled the first time a page
-- shows them: the renderer is Rust code, which a migration cannot run.
ALTER TABLE messages ADD COLUMN html text, ADD COLUMN html_renderer text;
