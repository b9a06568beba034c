//! Any text as confab.toml: loading refuses it with an error or accepts it, never panics.
#![no_main]

use std::collections::HashMap;

use confab::settings::{Overrides, Settings};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|toml: &str| {
    let dir = std::env::temp_dir().join(format!("confab-fuzz-settings-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let file = dir.join("confab.toml");
    if std::fs::write(&file, toml).is_ok() {
        let overrides = Overrides {
            config_file: Some(file),
            ..Default::default()
        };
        let _ = Settings::load_from(&overrides, HashMap::new());
    }
});
