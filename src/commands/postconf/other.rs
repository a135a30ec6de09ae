//! postconf -m (lookup table types), -l (mailbox lock styles), -a / -A
//! (server / client SASL plug-in types) and -T (TLS library facts), as
//! Debian 12's Postfix 3.7.11 prints them.
//!
//! `-m` lists Postfix's built-in table types plus the types that
//! `$meta_directory/dynamicmaps.cf` and `dynamicmaps.cf.d/*` register, read
//! with Postfix's rules and diagnostics. rostfix implements cdb, lmdb and pcre
//! itself, so they are listed as if Debian's postfix-cdb, postfix-lmdb and
//! postfix-pcre plug-in packages were installed.

use super::core::Pcf;
use crate::global::msg;
use crate::global::out;
use crate::util::latin1;

/// Table types compiled into Debian's Postfix 3.7.11 (`postconf -m` without
/// any dynamicmaps.cf).
const STATIC_MAP_TYPES: &[&str] = &[
    "btree",
    "cidr",
    "environ",
    "fail",
    "hash",
    "inline",
    "internal",
    "memcache",
    "nis",
    "pipemap",
    "proxy",
    "randmap",
    "regexp",
    "socketmap",
    "static",
    "tcp",
    "texthash",
    "unionmap",
    "unix",
];

/// Table types that Debian ships as plug-ins and rostfix has built in.
const PLUGIN_MAP_TYPES: &[&str] = &["cdb", "lmdb", "pcre"];

/// Mailbox lock styles on Linux, in Postfix's order.
const LOCK_STYLES: &[&str] = &["flock", "fcntl", "dotlock"];

/// SASL plug-in types of Debian's build.
const SASL_SERVER_TYPES: &[&str] = &["cyrus", "dovecot"];
const SASL_CLIENT_TYPES: &[&str] = &["cyrus"];

/// The OpenSSL version Debian 12's postfix 3.7.11 was compiled against.
const TLS_COMPILE_VERSION: &str = "OpenSSL 3.0.11 19 Sep 2023";

/// Public-key algorithms of that OpenSSL build, sorted.
const TLS_PKEY_ALGORITHMS: &[&str] = &["dsa", "ecdsa", "rsa"];

fn print_lines<S: AsRef<str>>(items: &[S]) {
    for i in items {
        out::print(i.as_ref());
        out::print("\n");
    }
}

/// The dynamic table types registered by one dynamicmaps.cf text, in file
/// order, with Postfix's diagnostics (`path` names the file).
fn parse_dynamicmaps(path: &str, text: &[u8], seen: &mut Vec<String>) {
    let mut rest = text;
    let mut linenum = 0;
    while !rest.is_empty() {
        let (line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = next;
        // A C string ends at its first NUL.
        let line = match line.iter().position(|&b| b == 0) {
            Some(i) => &line[..i],
            None => line,
        };
        linenum += 1;
        if line.is_empty() || line[0] == b'#' {
            continue;
        }
        let words: Vec<&[u8]> = line
            .split(|&b| b == b' ' || b == b'\t')
            .filter(|w| !w.is_empty())
            .collect();
        if words.len() != 3 && words.len() != 4 {
            msg::fatal(&format!(
                "{path}, line {linenum}: Expected \"dict-type .so-name dict-function [mkmap-function]\""
            ));
        }
        let name = latin1::decode(words[0]);
        if !words[0][0].is_ascii_alphanumeric() {
            msg::fatal(&format!(
                "{path}, line {linenum}: unsupported syntax \"{name}\""
            ));
        }
        if seen.contains(&name) {
            msg::warn(&format!("{path}: ignoring duplicate entry for \"{name}\""));
        } else {
            seen.push(name);
        }
    }
}

/// Read one dynamicmaps.cf file as Postfix's dymap_read_conf: a missing file
/// is silently ignored; a file that is not root-owned or is group/other
/// writable is skipped with a warning.
fn read_dynamicmaps(path: &str, seen: &mut Vec<String>) {
    use std::os::unix::fs::MetadataExt;
    let p = latin1::to_path(path);
    let file = match std::fs::File::open(&p) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => msg::fatal(&format!(
            "{path}: file open failed: {}",
            crate::global::config_file::errno_text(&e)
        )),
    };
    let meta = match file.metadata() {
        Ok(m) => m,
        Err(e) => msg::fatal(&format!(
            "{path}: fstat failed; {}",
            crate::global::config_file::errno_text(&e)
        )),
    };
    if meta.uid() != 0 || meta.mode() & 0o022 != 0 {
        msg::warn(&format!(
            "{path}: file is owned or writable by non-root users -- skipping this file"
        ));
        return;
    }
    // A directory opens but reads nothing, as with Postfix.
    let mut data = Vec::new();
    let _ = std::io::Read::read_to_end(&mut &file, &mut data);
    parse_dynamicmaps(path, &data, seen);
}

/// The table types that dynamicmaps.cf and dynamicmaps.cf.d/* register.
fn dynamic_map_types(meta_dir: &str) -> Vec<String> {
    let conf = format!("{meta_dir}/dynamicmaps.cf");
    let mut seen = Vec::new();
    read_dynamicmaps(&conf, &mut seen);
    let dir = format!("{conf}.d");
    match std::fs::read_dir(latin1::to_path(&dir)) {
        Ok(entries) => {
            for e in entries {
                match e {
                    Ok(e) => {
                        let name = latin1::from_os(&e.file_name());
                        read_dynamicmaps(&format!("{dir}/{name}"), &mut seen);
                    }
                    Err(err) => {
                        msg::warn(&format!(
                            "{dir}: directory read error: {}",
                            crate::global::config_file::errno_text(&err)
                        ));
                        break;
                    }
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => msg::warn(&format!(
            "{dir}: directory open failed: {}",
            crate::global::config_file::errno_text(&e)
        )),
    }
    seen
}

/// All table type names, sorted as strcmp does (repeats kept, as Postfix
/// keeps a dynamic type that shadows a built-in one).
fn map_type_list(dynamic: &[String]) -> Vec<String> {
    let mut names: Vec<String> = STATIC_MAP_TYPES.iter().map(|s| s.to_string()).collect();
    names.extend(dynamic.iter().cloned());
    for p in PLUGIN_MAP_TYPES {
        if !dynamic.iter().any(|d| d == p) {
            names.push(p.to_string());
        }
    }
    names.sort_by_key(|a| latin1::encode(a));
    names
}

/// `postconf -m`: main.cf has been read by the caller.
pub fn show_maps(pcf: &mut Pcf) {
    super::templates::mail_params_init(pcf);
    let meta_dir = super::templates::conf_value(pcf, "meta_directory");
    let dynamic = dynamic_map_types(&meta_dir);
    print_lines(&map_type_list(&dynamic));
}

/// `postconf -l`.
pub fn show_locks() {
    print_lines(LOCK_STYLES);
}

/// `postconf -a` (server) or `postconf -A` (client).
pub fn show_sasl(server: bool) {
    print_lines(if server {
        SASL_SERVER_TYPES
    } else {
        SASL_CLIENT_TYPES
    });
}

/// The version text of the OpenSSL library installed on this host, as
/// OpenSSL_version(OPENSSL_VERSION) would return it to Postfix: found in
/// the libcrypto shared object; the compile-time version when none is found.
fn tls_run_version() -> String {
    let arch = if cfg!(target_arch = "x86_64") {
        "x86_64-linux-gnu"
    } else if cfg!(target_arch = "aarch64") {
        "aarch64-linux-gnu"
    } else if cfg!(target_arch = "x86") {
        "i386-linux-gnu"
    } else {
        "unknown"
    };
    let candidates = [
        format!("/usr/lib/{arch}/libcrypto.so.3"),
        format!("/lib/{arch}/libcrypto.so.3"),
        "/usr/lib64/libcrypto.so.3".to_string(),
        "/usr/lib/libcrypto.so.3".to_string(),
    ];
    for c in &candidates {
        if let Ok(data) = std::fs::read(c)
            && let Some(v) = find_openssl_version(&data)
        {
            return v;
        }
    }
    TLS_COMPILE_VERSION.to_string()
}

/// Find OPENSSL_VERSION_TEXT ("OpenSSL 3.0.19 27 Jan 2026") among the
/// NUL-terminated strings of a library image.
fn find_openssl_version(data: &[u8]) -> Option<String> {
    const MONTHS: &[&str] = &[
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let needle = b"OpenSSL ";
    let mut i = 0;
    while let Some(off) = data[i..].windows(needle.len()).position(|w| w == needle) {
        let start = i + off;
        i = start + 1;
        if start > 0 && data[start - 1] != 0 {
            continue;
        }
        let end = match data[start..].iter().position(|&b| b == 0) {
            Some(e) => start + e,
            None => continue,
        };
        let s = String::from_utf8_lossy(&data[start..end]).to_string();
        let w: Vec<&str> = s.split(' ').collect();
        let ok = w.len() == 5
            && w[1].starts_with(|c: char| c.is_ascii_digit())
            && w[1].contains('.')
            && w[1]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
            && !w[2].is_empty()
            && w[2].len() <= 2
            && w[2].chars().all(|c| c.is_ascii_digit())
            && MONTHS.contains(&w[3])
            && w[4].len() == 4
            && w[4].chars().all(|c| c.is_ascii_digit());
        if ok {
            return Some(s);
        }
    }
    None
}

/// `postconf -T mode`.
pub fn show_tls(_pcf: &mut Pcf, arg: &str) {
    match arg {
        "compile-version" => print_lines(&[TLS_COMPILE_VERSION]),
        "run-version" => print_lines(&[tls_run_version()]),
        "public-key-algorithms" => print_lines(TLS_PKEY_ALGORITHMS),
        _ => {
            msg::warn(&format!("unknown 'postconf -T' mode: {arg}"));
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_list_with_debian_plugins() {
        let list = map_type_list(&[]);
        assert_eq!(
            list.join(" "),
            "btree cdb cidr environ fail hash inline internal lmdb memcache nis pcre \
             pipemap proxy randmap regexp socketmap static tcp texthash unionmap unix"
        );
        // Debian's full dynamicmaps.cf: the other plug-ins are listed too.
        let mut seen = Vec::new();
        parse_dynamicmaps(
            "dynamicmaps.cf",
            b"# dict-type\tso-name\n\
              cdb\tpostfix-cdb.so\tdict_cdb_open\tmkmap_cdb_open\n\
              ldap\tpostfix-ldap.so\tdict_ldap_open\n\
              lmdb\tpostfix-lmdb.so\tdict_lmdb_open\tmkmap_lmdb_open\n\
              mysql postfix-mysql.so dict_mysql_open",
            &mut seen,
        );
        assert_eq!(seen, vec!["cdb", "ldap", "lmdb", "mysql"]);
        let list = map_type_list(&seen);
        assert_eq!(list.iter().filter(|n| *n == "cdb").count(), 1);
        assert_eq!(list.len(), STATIC_MAP_TYPES.len() + 5);
        assert!(list.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn openssl_version_text_is_found() {
        let img = b"\x00junk OpenSSL 1.0\x00OpenSSL 3.0.19 27 Jan 2026\x00more";
        assert_eq!(
            find_openssl_version(img).as_deref(),
            Some("OpenSSL 3.0.19 27 Jan 2026")
        );
        assert_eq!(find_openssl_version(b"OpenSSL 3 x\x00"), None);
    }
}
