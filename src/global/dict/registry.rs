//! Table types by name: `dict_open("hash:/etc/aliases", ...)`.
//!
//! Each table module adds itself to [`TYPES`] with an opener. `postconf -m`
//! lists the names here.

use super::{Dict, OpenError, OpenMode, split_spec};

/// Opens a table of one type: (name after the `type:`, mode, DICT_FLAG_* bits).
pub type Opener = fn(&str, OpenMode, u32) -> Result<Box<dyn Dict>, OpenError>;

/// Every supported table type. Keep sorted by name.
pub static TYPES: &[(&str, Opener)] = &[
    ("btree", super::dict_db::btree_open),
    ("cdb", super::cdb::open),
    ("cidr", super::cidr::open),
    ("environ", super::environ::open),
    ("fail", super::fail::open),
    ("hash", super::dict_db::hash_open),
    ("inline", super::inline::open),
    ("internal", super::internal::open),
    ("lmdb", super::lmdb::open),
    ("memcache", super::memcache::open),
    ("nis", super::nis::open),
    ("pcre", super::pcre::open),
    ("pipemap", super::pipemap::open),
    ("proxy", super::proxy::open),
    ("randmap", super::randmap::open),
    ("regexp", super::regexp::open),
    ("socketmap", super::socketmap::open),
    ("static", super::r#static::open),
    ("tcp", super::tcp::open),
    ("texthash", super::texthash::open),
    ("unionmap", super::unionmap::open),
    ("unix", super::unix::open),
];

/// Open `type:name`, as Postfix's dict_open(): with SMTPUTF8 support on
/// (util_utf8_enable, see [`crate::util::casefold::utf8_enable`]) and
/// DICT_FLAG_UTF8_REQUEST in `flags`, the table gets the UTF-8 layer
/// ([`super::utf8`]): UTF-8 checks and Unicode case folding of keys.
pub fn dict_open(spec: &str, mode: OpenMode, flags: u32) -> Result<Box<dyn Dict>, OpenError> {
    let d = dict_open_plain(spec, mode, flags)?;
    if d.flags() & super::flags::UTF8_ACTIVE == 0
        && super::utf8::needed(crate::util::casefold::utf8_enable(), flags)
    {
        return Ok(super::utf8::activate(d));
    }
    Ok(d)
}

/// Open `type:name` without adding the UTF-8 layer.
pub fn dict_open_plain(spec: &str, mode: OpenMode, flags: u32) -> Result<Box<dyn Dict>, OpenError> {
    let (ty, name) = split_spec(spec)?;
    if ty.is_empty() || name.is_empty() {
        return Err(OpenError(format!(
            "open dictionary: expecting \"type:name\" form instead of \"{ty}:{name}\""
        )));
    }
    match TYPES.iter().find(|(t, _)| *t == ty) {
        Some((_, open)) => open(name, mode, flags),
        None => Err(OpenError(format!("unsupported dictionary type: {ty}"))),
    }
}

/// The names of the supported types, sorted.
pub fn type_names() -> Vec<&'static str> {
    let mut v: Vec<&str> = TYPES.iter().map(|(n, _)| *n).collect();
    v.sort();
    v
}
