//! A small valid PDF with a text layer, written by hand (no PDF library in the tests), so the
//! text confab gets out of it is known.

/// One page showing `lines` in Helvetica, one line each.
pub fn with_text(lines: &[&str]) -> Vec<u8> {
    page(lines, "4 0 R", None)
}

/// A decompression-style bomb: one page showing `lines`, whose content is that text followed by
/// the same 64 KB stream of spaces `repeats` times. About 100 KB on disk for 5,000 repeats, and
/// over 300 MB (and seconds of work) in a parser that puts the page's content together.
pub fn bomb(lines: &[&str], repeats: usize) -> Vec<u8> {
    let contents = format!("[4 0 R{}]", " 6 0 R".repeat(repeats));
    page(lines, &contents, Some(" ".repeat(64 << 10)))
}

fn page(lines: &[&str], contents: &str, padding: Option<String>) -> Vec<u8> {
    let mut content = String::from("BT /F1 12 Tf 72 720 Td 14 TL\n");
    for line in lines {
        let escaped = line
            .replace('\\', "\\\\")
            .replace('(', "\\(")
            .replace(')', "\\)");
        content.push_str(&format!("({escaped}) Tj T*\n"));
    }
    content.push_str("ET");
    let stream = |data: &str| format!("<< /Length {} >>\nstream\n{data}\nendstream", data.len());
    let mut objects = vec![
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {contents} \
             /Resources << /Font << /F1 5 0 R >> >> >>"
        ),
        stream(&content),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
            .to_string(),
    ];
    objects.extend(padding.as_deref().map(stream));
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (index, object) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n{object}\nendobj\n", index + 1).as_bytes());
    }
    let xref = pdf.len();
    let mut table = format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1);
    for offset in offsets {
        table.push_str(&format!("{offset:010} 00000 n \n"));
    }
    pdf.extend_from_slice(table.as_bytes());
    pdf.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    pdf
}
