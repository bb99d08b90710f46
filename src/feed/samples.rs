//! Generated sample documents for tests and benchmarks (the "10 MB feed" fixture is generated
//! here rather than committed).

/// An ordinary Atom feed of at least `size` bytes: an envelope and entries of about 2 KB.
pub fn big_atom(size: usize) -> Vec<u8> {
    let mut out = String::with_capacity(size + 4096);
    out.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">\n  <id>urn:big</id>\n  <title>Big</title>\n");
    let mut i = 0;
    while out.len() < size {
        out.push_str(&format!(
            "  <entry>\n    <id>urn:big:{i}</id>\n    <title>Entry {i}</title>\n    <content type=\"text\">{}</content>\n  </entry>\n",
            "lorem ipsum dolor sit amet ".repeat(75)
        ));
        i += 1;
    }
    out.push_str("</feed>\n");
    out.into_bytes()
}

/// An Atom feed whose envelope (a long subtitle) is about `envelope` bytes, with `entries`
/// small entries, newest (`urn:e:{entries-1}`) first: the shape that made single-entry
/// delivery cost entries × envelope.
pub fn envelope_heavy_atom(envelope: usize, entries: usize) -> Vec<u8> {
    let mut out = String::with_capacity(envelope + entries * 128 + 512);
    out.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">\n  <id>urn:heavy</id>\n  <title>Heavy</title>\n  <subtitle>");
    out.push_str(&"envelope ".repeat(envelope / 9));
    out.push_str("</subtitle>\n");
    for i in (0..entries).rev() {
        out.push_str(&format!(
            "  <entry>\n    <id>urn:e:{i}</id>\n    <title>Entry {i}</title>\n  </entry>\n"
        ));
    }
    out.push_str("</feed>\n");
    out.into_bytes()
}
