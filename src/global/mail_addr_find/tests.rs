//! Cases from Postfix 3.7.11's src/global/mail_addr_find.in and its
//! expected output mail_addr_find.ref (facts recorded from Postfix; IPL 1.0 /
//! EPL 2.0 upstream, used as test data with attribution).

use super::*;
use crate::global::dict::flags;

/// (maps, test line `in:query:out:strategy:key[:result[:ext]]`, expected line).
const CASES: &[(&str, &str, &str)] = &[
    (
        "inline:{plain1@1.example=plain2@2.example,{\"aa bb\"@cc.example=\"dd ee\"@dd.example}}",
        "internal:external:external:default:plain1@1.example:plain2@2.example",
        "internal:plain1@1.example -external-> external:plain2@2.example (null extension)",
    ),
    (
        "inline:{plain1@1.example=plain2@2.example,{\"aa bb\"@cc.example=\"dd ee\"@dd.example}}",
        "internal:external:external:default:aa bb@cc.example:\"dd ee\"@dd.example",
        "internal:aa bb@cc.example -external-> external:\"dd ee\"@dd.example (null extension)",
    ),
    (
        "inline:{plain1@1.example=plain2@2.example,{\"aa bb\"@cc.example=\"dd ee\"@dd.example}}",
        "external:external:external:default:\"aa bb\"@cc.example:\"dd ee\"@dd.example",
        "external:\"aa bb\"@cc.example -external-> external:\"dd ee\"@dd.example (null extension)",
    ),
    (
        "inline:{plain1@1.example=plain2@2.example,{\"aa bb\"@cc.example=\"dd ee\"@dd.example}}",
        "external:external:internal:default:\"aa bb\"@cc.example:dd ee@dd.example",
        "external:\"aa bb\"@cc.example -external-> internal:dd ee@dd.example (null extension)",
    ),
    (
        "inline:{plain1@1.example=plain2@2.example,{\"aa bb\"@cc.example=\"dd ee\"@dd.example}}",
        "internal:internal:external:default:plain1@1.example:plain2@2.example",
        "internal:plain1@1.example -internal-> external:plain2@2.example (null extension)",
    ),
    (
        "inline:{plain1@1.example=plain2@2.example,{\"aa bb\"@cc.example=\"dd ee\"@dd.example}}",
        "internal:internal:external:default:aa bb@cc.example",
        "internal:aa bb@cc.example -internal-> external:(not found) (null extension)",
    ),
    (
        "inline:{plain1@1.example=plain2@2.example,{\"aa bb\"@cc.example=\"dd ee\"@dd.example}}",
        "internal:internal:external:default:\"aa bb\"@cc.example:\"dd ee\"@dd.example",
        "internal:\"aa bb\"@cc.example -internal-> external:\"dd ee\"@dd.example (null extension)",
    ),
    (
        "inline:{plain1@1.example=plain2@2.example,{\"aa bb\"@cc.example=\"dd ee\"@dd.example}}",
        "internal:external:external:default:plain1+ext@1.example:plain2@2.example:+ext",
        "internal:plain1+ext@1.example -external-> external:plain2@2.example (+ext)",
    ),
    (
        "inline:{plain1@1.example=plain2@2.example,{\"aa bb\"@cc.example=\"dd ee\"@dd.example}}",
        "internal:external:external:default:aa bb+ax bx@cc.example:\"dd ee\"@dd.example:+ax bx",
        "internal:aa bb+ax bx@cc.example -external-> external:\"dd ee\"@dd.example (+ax bx)",
    ),
    (
        "inline:{plain1@1.example=plain2@2.example,{\"aa bb\"@cc.example=\"dd ee\"@dd.example}}",
        "external:external:external:default:\"aa bb+ax bx\"@cc.example:\"dd ee\"@dd.example:+ax bx",
        "external:\"aa bb+ax bx\"@cc.example -external-> external:\"dd ee\"@dd.example (+ax bx)",
    ),
    (
        "inline:{plain1@1.example=plain2@2.example,{\"aa bb\"@cc.example=\"dd ee\"@dd.example}}",
        "external:external:internal:default:\"aa bb+ax bx\"@cc.example:dd ee@dd.example:+ax bx",
        "external:\"aa bb+ax bx\"@cc.example -external-> internal:dd ee@dd.example (+ax bx)",
    ),
    (
        "inline:{plain1@1.example=plain2@2.example,{\"aa bb\"@cc.example=\"dd ee\"@dd.example}}",
        "internal:internal:external:default:plain1+ext@1.example:plain2@2.example:+ext",
        "internal:plain1+ext@1.example -internal-> external:plain2@2.example (+ext)",
    ),
    (
        "inline:{plain1@1.example=plain2@2.example,{\"aa bb\"@cc.example=\"dd ee\"@dd.example}}",
        "internal:internal:external:default:\"aa bb+ax bx\"@cc.example",
        "internal:\"aa bb+ax bx\"@cc.example -internal-> external:(not found) (null extension)",
    ),
    (
        "inline:{plain1@1.example=plain2@2.example,{\"aa bb\"@cc.example=\"dd ee\"@dd.example}}",
        "internal:internal:external:default:\"aa bb\"+ax bx@cc.example:\"dd ee\"@dd.example:+ax bx",
        "internal:\"aa bb\"+ax bx@cc.example -internal-> external:\"dd ee\"@dd.example (+ax bx)",
    ),
    (
        "inline:{\"a@b\"=foo@example,\"a.b.\"=bar@example}",
        "external:external:external:default:\"a@b\"@localhost.localdomain:foo@example",
        "external:\"a@b\"@localhost.localdomain -external-> external:foo@example (null extension)",
    ),
    (
        "inline:{\"a@b\"=foo@example,\"a.b.\"=bar@example}",
        "external:external:external:default:\"a@b+ext\"@localhost.localdomain:foo@example:+ext",
        "external:\"a@b+ext\"@localhost.localdomain -external-> external:foo@example (+ext)",
    ),
    (
        "inline:{\"a@b\"=foo@example,\"a.b.\"=bar@example}",
        "external:external:external:default:\"a.b.\"@localhost.localdomain:bar@example",
        "external:\"a.b.\"@localhost.localdomain -external-> external:bar@example (null extension)",
    ),
    (
        "inline:{\"a@b\"=extern-1@example,a@b=intern-1@example,a.b.=intern-2@example}",
        "internal:external-first:external:default:a@b@localhost.localdomain:extern-1@example",
        "internal:a@b@localhost.localdomain -external-first-> external:extern-1@example (null extension)",
    ),
    (
        "inline:{\"a@b\"=extern-1@example,a@b=intern-1@example,a.b.=intern-2@example}",
        "internal:external-first:external:default:a.b.@localhost.localdomain:intern-2@example",
        "internal:a.b.@localhost.localdomain -external-first-> external:intern-2@example (null extension)",
    ),
    (
        "inline:{plain1@1.example=plain2@2.example,@3.example=plain4@4.example,plain5@3.example=plain6@6.example}",
        "external:external:external:default:plain1+ext@1.example:plain2@2.example:+ext",
        "external:plain1+ext@1.example -external-> external:plain2@2.example (+ext)",
    ),
    (
        "inline:{plain1@1.example=plain2@2.example,@3.example=plain4@4.example,plain5@3.example=plain6@6.example}",
        "external:external:external:default:plain2@2.example:",
        "external:plain2@2.example -external-> external:(not found) (null extension)",
    ),
    (
        "inline:{plain1@1.example=plain2@2.example,@3.example=plain4@4.example,plain5@3.example=plain6@6.example}",
        "external:external:external:default:plain3@3.example:plain4@4.example",
        "external:plain3@3.example -external-> external:plain4@4.example (null extension)",
    ),
    (
        "inline:{plain1@1.example=plain2@2.example,@3.example=plain4@4.example,plain5@3.example=plain6@6.example}",
        "external:external:external:default:plain5@3.example:plain6@6.example",
        "external:plain5@3.example -external-> external:plain6@6.example (null extension)",
    ),
    (
        "inline:{plain1@1.example=plain2@2.example,3.example=plain4@4.example,plain5@3.example=plain6@6.example}",
        "external:external:external:full|noext|domain:plain1+ext@1.example:plain2@2.example:+ext",
        "external:plain1+ext@1.example -external-> external:plain2@2.example (+ext)",
    ),
    (
        "inline:{plain1@1.example=plain2@2.example,3.example=plain4@4.example,plain5@3.example=plain6@6.example}",
        "external:external:external:full|noext|domain:plain2@2.example:",
        "external:plain2@2.example -external-> external:(not found) (null extension)",
    ),
    (
        "inline:{plain1@1.example=plain2@2.example,3.example=plain4@4.example,plain5@3.example=plain6@6.example}",
        "external:external:external:full|noext|domain:plain3@3.example:plain4@4.example",
        "external:plain3@3.example -external-> external:plain4@4.example (null extension)",
    ),
    (
        "inline:{plain1@1.example=plain2@2.example,3.example=plain4@4.example,plain5@3.example=plain6@6.example}",
        "external:external:external:full|noext|domain:plain5@3.example:plain6@6.example",
        "external:plain5@3.example -external-> external:plain6@6.example (null extension)",
    ),
    (
        "inline:{ab=foo@example,@localhost.localdomain=@bar.example}",
        "external:external:external:default:ab@localhost.localdomain:foo@example:",
        "external:ab@localhost.localdomain -external-> external:foo@example (null extension)",
    ),
    (
        "inline:{ab=foo@example,@localhost.localdomain=@bar.example}",
        "external:external:external:default:cd@localhost.localdomain:@bar.example",
        "external:cd@localhost.localdomain -external-> external:@bar.example (null extension)",
    ),
    (
        "inline:{ab@=foo@example,localhost.localdomain=@bar.example}",
        "internal:external:external:localpart_at_if_local|domain:ab@localhost.localdomain:foo@example:",
        "internal:ab@localhost.localdomain -external-> external:foo@example (null extension)",
    ),
    (
        "inline:{ab@=foo@example,localhost.localdomain=@bar.example}",
        "internal:external:external:localpart_at_if_local|noext|domain:ab+ext@localhost.localdomain:foo@example:+ext",
        "internal:ab+ext@localhost.localdomain -external-> external:foo@example (+ext)",
    ),
    (
        "inline:{ab@=foo@example,localhost.localdomain=@bar.example}",
        "internal:external:external:localpart_at_if_local|domain:cd@localhost.localdomain:@bar.example",
        "internal:cd@localhost.localdomain -external-> external:@bar.example (null extension)",
    ),
    (
        "inline:{ab@=foo@example,localhost.localdomain=@bar.example}",
        "external:external:external:localpart_at|domain:ab@localhost.localdomain:@bar.example:",
        "external:ab@localhost.localdomain -external-> external:@bar.example (null extension)",
    ),
    (
        "inline:{ab@=foo@example,localhost.localdomain=@bar.example}",
        "external:external:external:localpart_at|domain:ab@foo:foo@example",
        "external:ab@foo -external-> external:foo@example (null extension)",
    ),
    (
        "inline:{example=example-result,.example=dot-example-result}",
        "external:external:external:domain:plain1+ext@1.example",
        "external:plain1+ext@1.example -external-> external:(not found) (null extension)",
    ),
    (
        "inline:{example=example-result,.example=dot-example-result}",
        "external:external:external:domain:foo@sub.example",
        "external:foo@sub.example -external-> external:(not found) (null extension)",
    ),
    (
        "inline:{example=example-result,.example=dot-example-result}",
        "external:external:external:domain:foo@example:example-result",
        "external:foo@example -external-> external:example-result (null extension)",
    ),
    (
        "inline:{example=example-result,.example=dot-example-result}",
        "external:external:external:domain|pdms:foo@example:example-result",
        "external:foo@example -external-> external:example-result (null extension)",
    ),
    (
        "inline:{example=example-result,.example=dot-example-result}",
        "external:external:external:domain|pdms:foo@sub.example:example-result",
        "external:foo@sub.example -external-> external:example-result (null extension)",
    ),
    (
        "inline:{example=example-result,.example=dot-example-result}",
        "external:external:external:domain|pdms:foo@sub.sub.example:example-result",
        "external:foo@sub.sub.example -external-> external:example-result (null extension)",
    ),
    (
        "inline:{example=example-result,.example=dot-example-result}",
        "external:external:external:domain|pddms:foo@example:example-result",
        "external:foo@example -external-> external:example-result (null extension)",
    ),
    (
        "inline:{example=example-result,.example=dot-example-result}",
        "external:external:external:domain|pddms:foo@sub.example:dot-example-result",
        "external:foo@sub.example -external-> external:dot-example-result (null extension)",
    ),
    (
        "inline:{example=example-result,.example=dot-example-result}",
        "external:external:external:domain|pddms:foo@sub.sub.example:dot-example-result",
        "external:foo@sub.sub.example -external-> external:dot-example-result (null extension)",
    ),
];

fn run(maps_spec: &str, line: &str) -> String {
    let mut f = line.splitn(5, ':');
    let in_field = f.next().unwrap();
    let query_field = f.next().unwrap();
    let out_field = f.next().unwrap();
    let strategy_field = f.next().unwrap();
    let rest = f.next().unwrap();
    let key = rest.split(':').next().unwrap();
    let mut maps = Maps::create(
        "mail_addr_find",
        maps_spec,
        flags::LOCK | flags::FOLD_FIX | flags::UTF8_REQUEST,
    );
    // The test driver's settings: recipient_delimiter = +,
    // myorigin = localdomain, mydestination = localhost.localdomain.
    let is_local = |d: &str| Ok(d.eq_ignore_ascii_case("localhost.localdomain"));
    let p = Params {
        split: SplitParams {
            delimiters: "+".into(),
            ..Default::default()
        },
        myorigin: "localdomain".into(),
        is_local: &is_local,
    };
    let r = mail_addr_find_opt(
        &mut maps,
        key,
        &p,
        Form::from_name(in_field).unwrap(),
        Form::from_name(query_field).unwrap(),
        Form::from_name(out_field).unwrap(),
        strategy::from_names(strategy_field).unwrap(),
    );
    let (res, ext) = match r {
        Ok(Some(f)) => (f.value, f.extension.unwrap_or("null extension".into())),
        Ok(None) => ("(not found)".into(), "null extension".into()),
        Err(_) => ("(try again)".into(), "null extension".into()),
    };
    format!("{in_field}:{key} -{query_field}-> {out_field}:{res} ({ext})")
}

#[test]
fn postfix_mail_addr_find_cases() {
    for (maps, line, want) in CASES {
        assert_eq!(run(maps, line), *want, "{maps} / {line}");
    }
}

fn find(maps_spec: &str, key: &str, delims: &str, strat: u32) -> Result<Option<Found>, DictError> {
    let mut maps = Maps::create("test", maps_spec, flags::FOLD_FIX | flags::UTF8_REQUEST);
    let is_local = |d: &str| Ok(d.eq_ignore_ascii_case("local.example"));
    let p = Params {
        split: SplitParams {
            delimiters: delims.into(),
            ..Default::default()
        },
        myorigin: "origin.example".into(),
        is_local: &is_local,
    };
    mail_addr_find_opt(
        &mut maps,
        key,
        &p,
        Form::Internal,
        Form::External,
        Form::External,
        strat,
    )
}

fn val(r: Result<Option<Found>, DictError>) -> String {
    match r {
        Ok(Some(f)) => format!("{} ({})", f.value, f.extension.unwrap_or_default()),
        Ok(None) => "(not found)".into(),
        Err(_) => "(try again)".into(),
    }
}

#[test]
fn search_order_and_delimiters() {
    let t = "inline:{user@d.example=1, user=2, @d.example=3, user@=4}";
    let d = strategy::DEFAULT;
    // Several delimiter characters: the first one in the local part splits.
    assert_eq!(val(find(t, "user-x+y@d.example", "+-", d)), "1 (-x+y)");
    assert_eq!(val(find(t, "user+x@d.example", "-", d)), "3 ()");
    // Case folding of the query (the table is folded when built).
    assert_eq!(val(find(t, "USER@D.Example", "+", d)), "1 ()");
    // Local-part lookups only for local domains (myorigin or is_local).
    assert_eq!(val(find(t, "user@local.example", "+", d)), "2 ()");
    assert_eq!(val(find(t, "user+e@origin.example", "+", d)), "2 (+e)");
    assert_eq!(val(find(t, "user@remote.example", "+", d)), "(not found)");
    let at_local = strategy::FULL | strategy::LOCALPART_AT_IF_LOCAL;
    assert_eq!(val(find(t, "user@local.example", "+", at_local)), "4 ()");
    // A key without @: only the full lookup and its extension-less form.
    assert_eq!(val(find(t, "user+x", "+", d)), "2 (+x)");
    // Partial keys never reach pattern tables (randmap is one).
    assert_eq!(val(find("randmap:{r}", "a+b@x", "+", d)), "r ()");
    assert_eq!(
        val(find("randmap:{r}", "a+b@x", "+", d & !strategy::FULL)),
        "(not found)"
    );
    // A table error stops the search.
    assert_eq!(
        val(find("fail:x, inline:{@d.example=3}", "u@d.example", "+", d)),
        "(try again)"
    );
    assert_eq!(
        val(find(
            "inline:{u@d.example=1}, fail:x",
            "u@d.example",
            "+",
            d
        )),
        "1 ()"
    );
    // Parent domains: pdms (domain matches subdomains), pddms (.domain).
    let dom = "inline:{d.example=5, .e.example=6}";
    let s = strategy::DOMAIN | strategy::PDMS;
    assert_eq!(val(find(dom, "u@a.b.d.example", "", s)), "5 ()");
    assert_eq!(val(find(dom, "u@a.e.example", "", s)), "(not found)");
    let s = strategy::DOMAIN | strategy::PDDMDS;
    assert_eq!(val(find(dom, "u@a.b.e.example", "", s)), "6 ()");
    assert_eq!(val(find(dom, "u@a.d.example", "", s)), "(not found)");
}
