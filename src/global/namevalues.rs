//! An in-memory name=value table (Postfix's "dict_ht"), walked in the order
//! Postfix walks it (see [`crate::util::htable`]).

use crate::util::htable::Order;
use std::collections::HashMap;

#[derive(Debug, Clone, Default)]
pub struct NameValues {
    order: Order,
    map: HashMap<String, String>,
}

impl NameValues {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(|s| s.as_str())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// Set a value; an existing name keeps its place in the walk order.
    pub fn set(&mut self, name: &str, value: &str) {
        if self
            .map
            .insert(name.to_string(), value.to_string())
            .is_none()
        {
            self.order.insert(name);
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<String> {
        let v = self.map.remove(name)?;
        self.order.remove(name);
        Some(v)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Entries in Postfix's walk order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.order.iter().map(move |n| (n, self.map[n].as_str()))
    }
}
