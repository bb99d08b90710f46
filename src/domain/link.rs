//! `Link` headers (RFC 8288) as far as a hub needs them: reading the `rel="hub"` URLs a topic
//! advertises, and writing the one combined header every delivery carries (WebSub §7).

/// The URLs of every link in `value` whose `rel` includes `rel`.
pub fn links_with_rel(value: &str, rel: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find('<') {
        let Some(len) = rest[start + 1..].find('>') else {
            break;
        };
        let target = &rest[start + 1..start + 1 + len];
        rest = &rest[start + 1 + len + 1..];
        // Parameters run until the next link, which starts after a comma.
        let params_end = next_link_start(rest);
        let params = rest[..params_end].trim_end().trim_end_matches(',');
        if params.split(';').any(|p| rel_matches(p, rel)) {
            found.push(target.trim().to_owned());
        }
        rest = &rest[params_end..];
    }
    found
}

/// Where the next `<` that starts a link is: after a comma outside quotes.
fn next_link_start(s: &str) -> usize {
    let mut in_quotes = false;
    let mut after_comma = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            ',' if !in_quotes => after_comma = true,
            '<' if after_comma && !in_quotes => return i,
            _ => {}
        }
    }
    s.len()
}

fn rel_matches(param: &str, rel: &str) -> bool {
    let Some((name, value)) = param.split_once('=') else {
        return false;
    };
    name.trim().eq_ignore_ascii_case("rel")
        && value
            .trim()
            .trim_matches('"')
            .split_ascii_whitespace()
            .any(|r| r.eq_ignore_ascii_case(rel))
}

/// The single header value every delivery carries, in the exact form conformance testers parse.
/// Characters that could end a link target early or start a parameter of their own (`<`, `>`,
/// `"`, white space, controls) are percent-encoded, so a topic URL cannot add a link (a
/// `rel="hub"` of its choosing) to the header. `,` and `;` are kept: inside `<…>` they are
/// part of the target (RFC 8288 §3), and encoding them would change the topic URL subscribers
/// compare `rel="self"` with.
pub fn delivery_link_header(hub: &str, self_url: &str) -> String {
    format!(
        "<{}>; rel=\"hub\", <{}>; rel=\"self\"",
        link_target(hub),
        link_target(self_url)
    )
}

fn link_target(url: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| matches!(c, '<' | '>' | '"') || c.is_whitespace() || c.is_control();
    if !url.contains(unsafe_char) {
        return std::borrow::Cow::Borrowed(url);
    }
    let mut out = String::with_capacity(url.len() + 8);
    for c in url.chars() {
        if unsafe_char(c) {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Whether two hub URLs name the same hub: equal after lower-casing scheme and host, dropping a
/// default port and a trailing slash.
pub fn same_hub(a: &str, b: &str) -> bool {
    fn norm(s: &str) -> Option<String> {
        let u = url::Url::parse(s).ok()?;
        let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
        let path = u.path().trim_end_matches('/');
        let query = u.query().map(|q| format!("?{q}")).unwrap_or_default();
        Some(format!(
            "{}://{}{port}{path}{query}",
            u.scheme(),
            u.host_str()?.to_ascii_lowercase()
        ))
    }
    match (norm(a), norm(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_hub_links_in_their_usual_shapes() {
        let v = r#"<https://hub.example/>; rel="hub", <https://pub.example/feed>; rel="self""#;
        assert_eq!(links_with_rel(v, "hub"), ["https://hub.example/"]);
        assert_eq!(links_with_rel(v, "self"), ["https://pub.example/feed"]);
        let v = r#"<https://a/>;rel=hub,<https://b/?x=1,2>; title="a, b"; rel="alternate hub""#;
        assert_eq!(links_with_rel(v, "hub"), ["https://a/", "https://b/?x=1,2"]);
        assert!(links_with_rel("garbage", "hub").is_empty());
        assert!(links_with_rel("<https://a/>; rel=\"hubs\"", "hub").is_empty());
    }

    #[test]
    fn writes_the_combined_header() {
        assert_eq!(
            delivery_link_header("http://hub/", "http://t/f"),
            r#"<http://hub/>; rel="hub", <http://t/f>; rel="self""#
        );
    }

    #[test]
    fn a_topic_url_cannot_add_a_link() {
        let hostile = r#"http://t/f>; rel="hub", <http://evil/hub"#;
        let header = delivery_link_header("http://hub/", hostile);
        assert_eq!(links_with_rel(&header, "hub"), ["http://hub/"]);
        assert_eq!(
            links_with_rel(&header, "self"),
            ["http://t/f%3E;%20rel=%22hub%22,%20%3Chttp://evil/hub"]
        );
        // Commas and semicolons inside the target stay as they are.
        let header = delivery_link_header("http://hub/", "http://t/a,b;c");
        assert_eq!(links_with_rel(&header, "self"), ["http://t/a,b;c"]);
    }

    #[test]
    fn compares_hub_urls_loosely() {
        assert!(same_hub(
            "HTTP://Hub.Example:80/hub/",
            "http://hub.example/hub"
        ));
        assert!(!same_hub(
            "http://hub.example/hub",
            "http://hub.example/other"
        ));
        assert!(!same_hub(
            "http://hub.example/hub",
            "https://hub.example/hub"
        ));
    }
}
