//! `fail:name`: every lookup, update, delete and walk fails with a
//! temporary error (Postfix's dict_fail). Postfix leaves errno at 0, so
//! postmap reports "query error: Application error".

use super::{Dict, DictError, OpenError, OpenMode, Seq, Status, flags};

/// The `%m` text Postfix prints for errno 0.
pub const APPLICATION_ERROR: &str = "Application error";

struct Fail {
    name: String,
    flags: u32,
    writable: bool,
}

fn err() -> DictError {
    DictError::retry()
}

impl Dict for Fail {
    fn type_name(&self) -> &str {
        "fail"
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
    fn lookup(&mut self, _key: &str) -> Result<Option<String>, DictError> {
        Err(err())
    }
    fn update(&mut self, key: &str, value: &str) -> Result<Status, DictError> {
        if !self.writable {
            let _ = (key, value);
            return Err(DictError::Fatal(format!(
                "table fail:{}: update operation is not supported",
                self.name
            )));
        }
        Err(err())
    }
    fn delete(&mut self, key: &str) -> Result<Status, DictError> {
        if !self.writable {
            let _ = key;
            return Err(DictError::Fatal(format!(
                "table fail:{}: delete operation is not supported",
                self.name
            )));
        }
        Err(err())
    }
    fn sequence(&mut self, _how: Seq) -> Result<Option<(String, String)>, DictError> {
        Err(err())
    }
}

/// Open `fail:name`.
pub fn open(name: &str, mode: OpenMode, dict_flags: u32) -> Result<Box<dyn Dict>, OpenError> {
    Ok(Box::new(Fail {
        name: name.to_string(),
        flags: dict_flags | flags::PATTERN,
        writable: mode != OpenMode::ReadOnly,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn always_fails_temporarily() {
        let mut d = open("x", OpenMode::ReadWrite, 0).unwrap();
        assert_eq!(d.lookup("a"), Err(DictError::Retry(String::new())));
        assert_eq!(d.update("a", "b"), Err(DictError::Retry(String::new())));
        assert_eq!(d.delete("a"), Err(DictError::Retry(String::new())));
        assert!(d.sequence(Seq::First).is_err());
        assert_eq!(d.flags() & flags::PATTERN, flags::PATTERN);
        // Read-only: no update or delete method, as Postfix's generic text.
        let mut d = open("x", OpenMode::ReadOnly, 0).unwrap();
        assert_eq!(
            d.update("a", "b"),
            Err(DictError::Fatal(
                "table fail:x: update operation is not supported".into()
            ))
        );
        assert_eq!(
            d.delete("a"),
            Err(DictError::Fatal(
                "table fail:x: delete operation is not supported".into()
            ))
        );
    }
}
