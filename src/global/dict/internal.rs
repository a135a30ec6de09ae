//! `internal:` tables: an in-memory hash table (Postfix's dict_ht), empty
//! when opened. `inline:` and `texthash:` are built on it.

use super::helpers::fold_if;
use super::{Dict, DictError, OpenError, OpenMode, Seq, Status, flags};
use crate::util::htable::Order;
use std::collections::HashMap;

/// An in-memory table.
pub struct HtDict {
    type_name: String,
    name: String,
    flags: u32,
    map: HashMap<String, String>,
    order: Order,
    walk: Option<(Vec<String>, usize)>,
}

impl HtDict {
    /// An empty table of the given type and name.
    pub fn new(type_name: &str, name: &str, dict_flags: u32) -> HtDict {
        HtDict {
            type_name: type_name.to_string(),
            name: name.to_string(),
            flags: dict_flags | flags::FIXED,
            map: HashMap::new(),
            order: Order::default(),
            walk: None,
        }
    }

    /// Is `key` (folded per the flags) present?
    pub fn contains(&self, key: &str) -> bool {
        self.map
            .contains_key(&fold_if(self.flags, flags::FOLD_FIX, key))
    }

    /// Add or replace (Postfix's dict_ht never refuses a duplicate).
    pub fn put(&mut self, key: &str, value: &str) {
        let key = fold_if(self.flags, flags::FOLD_FIX, key);
        if self.map.insert(key.clone(), value.to_string()).is_none() {
            self.order.insert(&key);
        }
    }
}

impl Dict for HtDict {
    fn type_name(&self) -> &str {
        &self.type_name
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn flags(&self) -> u32 {
        self.flags
    }
    fn set_flags(&mut self, f: u32) {
        self.flags = f;
    }
    fn lookup(&mut self, key: &str) -> Result<Option<String>, DictError> {
        let key = fold_if(self.flags, flags::FOLD_FIX, key);
        Ok(self.map.get(&key).cloned())
    }
    fn update(&mut self, key: &str, value: &str) -> Result<Status, DictError> {
        self.put(key, value);
        Ok(Status::Success)
    }
    fn delete(&mut self, key: &str) -> Result<Status, DictError> {
        let key = fold_if(self.flags, flags::FOLD_FIX, key);
        if self.map.remove(&key).is_some() {
            self.order.remove(&key);
            Ok(Status::Success)
        } else {
            Ok(Status::Fail)
        }
    }
    fn sequence(&mut self, how: Seq) -> Result<Option<(String, String)>, DictError> {
        if how == Seq::First {
            let keys: Vec<String> = self.order.iter().map(str::to_string).collect();
            self.walk = Some((keys, 0));
        }
        let Some((keys, pos)) = self.walk.as_mut() else {
            return Ok(None);
        };
        while *pos < keys.len() {
            let k = &keys[*pos];
            *pos += 1;
            if let Some(v) = self.map.get(k) {
                return Ok(Some((k.clone(), v.clone())));
            }
        }
        Ok(None)
    }
}

/// Open `internal:name` (any mode: it is always an empty writable table).
pub fn open(name: &str, _mode: OpenMode, dict_flags: u32) -> Result<Box<dyn Dict>, OpenError> {
    Ok(Box::new(HtDict::new("internal", name, dict_flags)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_lookup_delete_walk() {
        let mut d = open("x", OpenMode::ReadWrite, flags::FOLD_FIX).unwrap();
        assert_eq!(d.lookup("a").unwrap(), None);
        d.update("A", "1").unwrap();
        d.update("b", "2").unwrap();
        d.update("a", "3").unwrap();
        assert_eq!(d.lookup("A").unwrap().as_deref(), Some("3"));
        let mut seen = Vec::new();
        let mut how = Seq::First;
        while let Some((k, v)) = d.sequence(how).unwrap() {
            seen.push(format!("{k}={v}"));
            how = Seq::Next;
        }
        seen.sort();
        assert_eq!(seen, ["a=3", "b=2"]);
        assert_eq!(d.delete("B").unwrap(), Status::Success);
        assert_eq!(d.delete("b").unwrap(), Status::Fail);
        // Without FOLD_FIX the key is used as given.
        let mut d = open("y", OpenMode::ReadOnly, 0).unwrap();
        d.update("A", "1").unwrap();
        assert_eq!(d.lookup("a").unwrap(), None);
        assert_eq!(d.lookup("A").unwrap().as_deref(), Some("1"));
        assert_eq!(d.flags() & flags::FIXED, flags::FIXED);
    }
}
