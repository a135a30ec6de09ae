//! Cases from Postfix 3.7.11's src/global/namadr_list.in and
//! namadr_list.ref (facts recorded from Postfix; upstream IPL 1.0 / EPL 2.0,
//! used as test data with attribution), plus domain and string lists.

use super::*;

fn namadr(patterns: &str, host: &str, addr: &str) -> &'static str {
    crate::global::maps::set_allow_surrogate(true);
    let mut l = namadr_list("command line", FLAG_PARENT | FLAG_RETURN, patterns);
    if l.matches(&[host, addr]) {
        "YES"
    } else if l.error {
        "ERROR"
    } else {
        "NO"
    }
}

#[test]
fn postfix_namadr_list_cases() {
    let junk = std::env::temp_dir().join(format!("rostfix-junk-{}", std::process::id()));
    std::fs::write(&junk, "foo !bar baz\n").unwrap();
    let j = junk.to_str().unwrap();
    let not_j = format!("!{j}");
    // The variable the environ: cases read.
    crate::sys::env::setenv("foo", "x").unwrap();
    let cases: &[(&str, &str, &str, &str)] = &[
        ("168.100.3.0/28", "dummy", "168.100.3.2", "YES"),
        ("!168.100.3.2 168.100.3.0/28", "dummy", "168.100.3.2", "NO"),
        ("!168.100.3.2 168.100.3.0/28", "dummy", "168.100.3.3", "YES"),
        ("168.100.3.0/28", "dummy", "168.100.3.16", "NO"),
        ("168.100.3.0/98", "dummy", "168.100.3.16", "ERROR"),
        ("168.100.589.0/28", "dummy", "168.100.3.16", "ERROR"),
        ("168.100.3.0/28", "dummy", "168.100.989.16", "NO"),
        (
            "2001:240:5c7:0:2d0:b7ff:fe88:2ca7",
            "dummy",
            "2001:240:5c7:0:2d0:b7ff:fe88:2ca7",
            "ERROR",
        ),
        (
            "[2001:240:5c7:0:2d0:b7ff:fe88:2ca7]",
            "dummy",
            "2001:240:5c7:0:2d0:b7ff:fe88:2ca7",
            "YES",
        ),
        (
            "[2001:240:5c7:0:2d0:b7ff:fe88:2ca7]",
            "dummy",
            "2001:240:5c7:0:2d0:b7ff:fe88:2ca8",
            "NO",
        ),
        (
            "[2001:240:5c7:0:2d0:b7ff:fe88:2ca7]/64",
            "dummy",
            "2001:240:5c7:0:2d0:b7ff:fe88:2ca8",
            "ERROR",
        ),
        (
            "[2001:240:5c7::]/64",
            "dummy",
            "2001:240:5c7:0:2d0:b7ff:fe88:2ca8",
            "YES",
        ),
        (
            "[2001:240:5c7::]/64",
            "dummy",
            "2001:24:5c7:0:2d0:b7ff:fe88:2ca8",
            "NO",
        ),
        (
            "[2001:24:5c7:0:2d0:b7ff:fe88:2ca8]",
            "dummy",
            "2001:24:5c7:0:2d0:b7ff:fe88:2ca8",
            "YES",
        ),
        (
            "[2001:24:5c7:0:2d0:b7ff:fe88:2ca8]",
            "dummy",
            "2001:24:5c7:0:2d0:b7ff:fe88:2ca7",
            "NO",
        ),
        ("168.100.3.2", "dummy", "168.100.3.2", "YES"),
        ("168.100.3.2", "dummy", "168.100.3.3", "NO"),
        ("[168.100.3.2]", "dummy", "168.100.3.2", "YES"),
        ("[168.100.3.2]", "dummy", "168.100.3.3", "NO"),
        (&not_j, "dummy", "168.100.3.3", "NO"),
        (&not_j, "foo", "168.100.3.3", "NO"),
        (&not_j, "bar", "168.100.3.3", "YES"),
        (&not_j, "baz", "168.100.3.3", "NO"),
        (j, "dummy", "168.100.3.3", "NO"),
        (j, "foo", "168.100.3.3", "YES"),
        (j, "bar", "168.100.3.3", "NO"),
        (j, "baz", "168.100.3.3", "YES"),
        ("be.be", "x.x.x", "127.0.0.1", "NO"),
        ("be/be", "x.x.x", "127.0.0.1", "ERROR"),
        ("[be:be]", "x.x.x", "127.0.0.1", "NO"),
        ("[be:be]", "x.x.x", "::1", "ERROR"),
        ("environ:junk", "foo", "168.100.3.3", "YES"),
        ("environ:junk", "bar", "168.100.3.3", "NO"),
        ("!environ:junk", "foo", "168.100.3.3", "NO"),
        ("!environ:junk", "bar", "168.100.3.3", "NO"),
        ("!!environ:junk", "foo", "168.100.3.3", "YES"),
        ("!!environ:junk", "bar", "168.100.3.3", "NO"),
        ("fail:1", "bar", "168.100.3.3", "ERROR"),
        ("!fail:1", "bar", "168.100.3.3", "ERROR"),
        ("/tmp/nosuchfile-rostfix", "bar", "168.100.3.3", "ERROR"),
    ];
    for (pat, host, addr, want) in cases {
        assert_eq!(namadr(pat, host, addr), *want, "{pat} {host} {addr}");
    }
    let _ = std::fs::remove_file(&junk);
}

#[test]
fn cidr_errors_as_postfix() {
    assert_eq!(
        cidr_parse("168.100.3.0/98").unwrap_err(),
        "bad mask length in \"168.100.3.0/98\""
    );
    assert_eq!(
        cidr_parse("168.100.589.0/28").unwrap_err(),
        "bad network value in \"168.100.589.0/28\""
    );
    assert_eq!(
        cidr_parse("[2001:240:5c7:0:2d0:b7ff:fe88:2ca7]/64").unwrap_err(),
        "non-null host address bits in \"2001:240:5c7:0:2d0:b7ff:fe88:2ca7/64\", perhaps you should use \"2001:240:5c7::/64\" instead"
    );
    assert_eq!(
        cidr_parse("be/be").unwrap_err(),
        "bad mask value in \"be/be\""
    );
    assert_eq!(
        cidr_parse("[be:be]").unwrap_err(),
        "bad address pattern: \"be:be\""
    );
}

#[test]
fn domain_lists() {
    let mut l = domain_list(
        "relay_domains",
        FLAG_RETURN,
        "example.com, .sub.org !bad.net net",
    );
    assert!(l.matches(&["example.com"]));
    assert!(l.matches(&["EXAMPLE.Com"]));
    // Without parent matching only .domain matches subdomains.
    assert!(!l.matches(&["a.example.com"]));
    assert!(l.matches(&["a.sub.org"]));
    assert!(!l.matches(&["sub.org"]));
    assert!(!l.matches(&["bad.net"]));
    assert!(l.matches(&["net"]));
    let mut l = domain_list(
        "relay_domains",
        FLAG_PARENT | FLAG_RETURN,
        "!x.example.com example.com",
    );
    assert!(l.matches(&["a.b.example.com"]));
    assert!(!l.matches(&["x.example.com"]));
    // The negated parent also covers its own subdomains.
    assert!(!l.matches(&["y.x.example.com"]));
    assert!(!l.matches(&["badexample.com"]));
    // Tables: parent domains are looked up in fixed-string tables.
    let mut l = domain_list("d", FLAG_PARENT | FLAG_RETURN, "inline:{example.com=ok}");
    assert!(l.matches(&["a.b.example.com"]));
    assert!(!l.matches(&["example.org"]));
    let mut l = domain_list("d", FLAG_RETURN, "inline:{.example.com=ok}");
    assert!(l.matches(&["a.b.example.com"]));
    assert!(!l.matches(&["example.com"]));
    // Pattern tables see only the full name.
    let mut l = domain_list("d", FLAG_PARENT | FLAG_RETURN, "randmap:{x}");
    assert!(l.matches(&["a.example.com"]));
    let mut l = domain_list("d", FLAG_RETURN, "fail:x example.com");
    assert!(!l.matches(&["example.com"]));
    assert!(l.error);
    assert_eq!(
        match_parent_style("debug_peer_list,smtpd_access_maps", "debug_peer_list"),
        FLAG_PARENT
    );
    assert_eq!(match_parent_style("debug_peer_list", "relay_domains"), 0);
    let mut s = string_list("s", 0, "Alpha beta");
    assert!(s.matches(&["alpha"]));
    assert!(!s.matches(&["alph"]));
}

#[test]
fn utf8_case_folding_as_postfix_casefold() {
    // Text is one char per byte (see crate::util::latin1).
    let l1 = |s: &str| crate::util::latin1::decode(s.as_bytes());
    // SMTPUTF8 on: patterns and arguments are folded with Unicode case
    // folding (ICU's full folding: "ß" and "ẞ" fold to "ss").
    let list = |utf8, patterns: &str| {
        MatchList::with_utf8(
            "relay_domains",
            FLAG_RETURN,
            patterns,
            &[Matcher::Hostname],
            utf8,
        )
    };
    let mut l = list(true, &l1("ÄÖÜ.example, STRASSE.de, .Bücher.example"));
    assert!(l.matches(&[&l1("äöü.EXAMPLE")]));
    assert!(l.matches(&[&l1("ÄÖÜ.example")]));
    assert!(l.matches(&[&l1("straße.de")]));
    assert!(l.matches(&[&l1("STRAẞE.DE")]));
    assert!(l.matches(&[&l1("www.BÜCHER.example")]));
    assert!(!l.matches(&[&l1("bücher.example")]));
    // SMTPUTF8 off: ASCII lower-casing only (Postfix's lowercase()).
    let mut l = list(false, &l1("ÄÖÜ.example, STRASSE.de, .Bücher.example"));
    assert!(!l.matches(&[&l1("äöü.EXAMPLE")]));
    assert!(l.matches(&[&l1("ÄÖÜ.EXAMPLE")]));
    assert!(!l.matches(&[&l1("straße.de")]));
    assert!(l.matches(&[&l1("Strasse.DE")]));
    assert!(!l.matches(&[&l1("www.BÜCHER.example")]));
    assert!(l.matches(&[&l1("www.Bücher.EXAMPLE")]));
    // String lists fold the same way.
    let mut s = MatchList::with_utf8("s", 0, &l1("Grüße"), &[Matcher::String], true);
    assert!(s.matches(&[&l1("GRÜSSE")]));
    let mut s = MatchList::with_utf8("s", 0, &l1("Grüße"), &[Matcher::String], false);
    assert!(!s.matches(&[&l1("GRÜSSE")]));
    assert!(s.matches(&[&l1("GRüße")]));
}
