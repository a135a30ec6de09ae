//! An in-memory name=value table that remembers insertion order
//! (Postfix's in-memory "dict_ht" dictionaries).

use std::collections::HashMap;

#[derive(Debug, Clone, Default)]
pub struct NameValues {
    order: Vec<String>,
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

    /// Set a value; a new name goes to the end, an existing one keeps its place.
    pub fn set(&mut self, name: &str, value: &str) {
        if self.map.insert(name.to_string(), value.to_string()).is_none() {
            self.order.push(name.to_string());
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<String> {
        let v = self.map.remove(name)?;
        self.order.retain(|n| n != name);
        Some(v)
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Entries in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.order
            .iter()
            .map(move |n| (n.as_str(), self.map[n].as_str()))
    }
}
