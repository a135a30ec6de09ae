use super::*;
use std::path::PathBuf;

fn setup(tag: &str, domains: &str) -> (PathBuf, Flush) {
    let d = std::env::temp_dir().join(format!("rostfix-flush-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    for q in ["flush", "deferred", "incoming", "public"] {
        std::fs::create_dir_all(d.join(q)).unwrap();
    }
    let conf = MailConf::from_text(
        "/nonexistent",
        &format!(
            "queue_directory = {}\nfast_flush_domains = {domains}\nhash_queue_depth = 1\nhash_queue_names = deferred\n",
            d.display()
        ),
    );
    let mut f = Flush::from_conf(&conf);
    f.queue.queue_directory = d.display().to_string();
    (d, f)
}

#[test]
fn site_paths() {
    assert_eq!(site_to_path("Example.COM").as_deref(), Some("example_com"));
    assert_eq!(site_to_path("[1.2.3.4]").as_deref(), Some("_1_2_3_4_"));
    assert_eq!(site_to_path("bücher.de"), None);
}

#[test]
fn requests_and_replies() {
    let mut r: &[u8] = b"request\0send_site\0site\0example.com\0\0";
    let req = read_request(&mut r).unwrap();
    assert_eq!(req.request, "send_site");
    assert_eq!(req.attrs, [("site".to_string(), "example.com".to_string())]);
    let mut r: &[u8] = b"W\0";
    assert_eq!(read_request(&mut r).unwrap().request, "W");
    let mut r: &[u8] = b"request\0add";
    assert_eq!(read_request(&mut r), None);

    let (d, mut f) = setup("rq", "example.com");
    let req = |name: &str, a: &[(&str, &str)]| {
        Some(Request {
            request: name.into(),
            attrs: a
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        })
    };
    // Eligibility: the domain and (parent style) its subdomains.
    assert_eq!(
        handle(
            &mut f,
            req("add", &[("site", "Example.com"), ("queue_id", "ABC123")])
        )
        .0,
        STAT_OK
    );
    assert_eq!(
        handle(
            &mut f,
            req(
                "add",
                &[("site", "sub.example.com"), ("queue_id", "DEF456")]
            )
        )
        .0,
        STAT_OK
    );
    assert_eq!(
        handle(
            &mut f,
            req("add", &[("site", "other.org"), ("queue_id", "ABC123")])
        )
        .0,
        STAT_DENY
    );
    assert_eq!(
        handle(
            &mut f,
            req("add", &[("site", "example.com"), ("queue_id", "../x")])
        )
        .0,
        STAT_BAD
    );
    assert_eq!(
        handle(&mut f, req("add", &[("site", "example.com")])).0,
        STAT_BAD
    );
    assert_eq!(handle(&mut f, req("bogus", &[])).0, STAT_BAD);
    assert_eq!(handle(&mut f, None).0, STAT_BAD);
    assert_eq!(
        handle(&mut f, req("rfrsh", &[])),
        (STAT_OK, Some(12 * 3600))
    );
    assert_eq!(handle(&mut f, req("purge", &[])), (STAT_OK, Some(0)));
    assert_eq!(
        std::fs::read_to_string(d.join("flush/example_com")).unwrap(),
        "ABC123\n"
    );
    // send_site moves the listed deferred message to incoming and empties the log.
    let deferred = f.queue.abs_path("deferred", "ABC123");
    std::fs::create_dir_all(deferred.parent().unwrap()).unwrap();
    std::fs::write(&deferred, b"x").unwrap();
    assert_eq!(
        handle(&mut f, req("send_site", &[("site", "example.com")])).0,
        STAT_OK
    );
    assert!(!deferred.exists());
    assert!(d.join("incoming/ABC123").exists());
    assert_eq!(
        std::fs::read_to_string(d.join("flush/example_com")).unwrap(),
        ""
    );
    assert_eq!(
        handle(&mut f, req("send_site", &[("site", "nope.org")])).0,
        STAT_DENY
    );
    // A site without a log: nothing to do.
    assert_eq!(
        handle(&mut f, req("send_site", &[("site", "x.example.com")])).0,
        STAT_OK
    );
    // send_file.
    let deferred = f.queue.abs_path("deferred", "FFF999");
    std::fs::create_dir_all(deferred.parent().unwrap()).unwrap();
    std::fs::write(&deferred, b"x").unwrap();
    assert_eq!(
        handle(&mut f, req("send_file", &[("queue_id", "FFF999")])).0,
        STAT_OK
    );
    assert!(d.join("incoming/FFF999").exists());
    assert_eq!(
        handle(&mut f, req("send_file", &[("queue_id", "a/b")])).0,
        STAT_BAD
    );
    // purge: an empty log older than fast_flush_purge_time goes away;
    // a non-empty one is flushed.
    let old = SystemTime::now() - Duration::from_secs(8 * 86400);
    std::fs::File::options()
        .write(true)
        .open(d.join("flush/example_com"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    f.refresh(0);
    assert!(!d.join("flush/example_com").exists());
    assert!(d.join("flush/sub_example_com").exists());
    assert_eq!(
        std::fs::read_to_string(d.join("flush/sub_example_com")).unwrap(),
        ""
    );
    let _ = std::fs::remove_dir_all(&d);
}
