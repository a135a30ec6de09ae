//! `proxy:type:name`. SHIM: Postfix sends these lookups to the proxymap
//! (read) or proxywrite (update) service over private/proxymap. rostfix has
//! no proxymap daemon yet, so this opens the inner table directly in the
//! calling process and returns the same results. The table keeps the name
//! `proxy:type:name` in messages. Not yet done: the `proxy_read_maps` /
//! `proxy_write_maps` check the proxymap server makes, and the privilege
//! separation (the inner table is read with the caller's rights).

use super::registry::dict_open;
use super::{Dict, DictError, OpenError, OpenMode, Seq, Status, flags};

struct Proxy {
    name: String,
    inner: Box<dyn Dict>,
}

impl Dict for Proxy {
    fn type_name(&self) -> &str {
        "proxy"
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn flags(&self) -> u32 {
        self.inner.flags()
    }
    fn set_flags(&mut self, f: u32) {
        self.inner.set_flags(f);
    }
    fn lookup(&mut self, key: &str) -> Result<Option<String>, DictError> {
        self.inner.lookup(key)
    }
    fn update(&mut self, key: &str, value: &str) -> Result<Status, DictError> {
        self.inner.update(key, value)
    }
    fn delete(&mut self, key: &str) -> Result<Status, DictError> {
        self.inner.delete(key)
    }
    fn sequence(&mut self, how: Seq) -> Result<Option<(String, String)>, DictError> {
        self.inner.sequence(how)
    }
    fn close(self: Box<Self>) -> Result<(), DictError> {
        self.inner.close()
    }
}

/// Open `proxy:type:name` (see the module note: direct access for now).
pub fn open(name: &str, mode: OpenMode, dict_flags: u32) -> Result<Box<dyn Dict>, OpenError> {
    if dict_flags & flags::NO_PROXY != 0 {
        return dict_open(name, mode, dict_flags);
    }
    let inner = dict_open(name, mode, dict_flags)?;
    Ok(Box::new(Proxy {
        name: name.to_string(),
        inner,
    }))
}
