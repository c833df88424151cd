//! The dial plan: the user part of the dialled URI (a number or a name), or the whole
//! `user@host`, names a room. An entry is written `NUMBER=ROOM` in config and on the command
//! line, and edited at run time over gRPC.

use std::collections::BTreeMap;

/// Why a dial-plan entry is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// Not `NUMBER=ROOM`.
    #[error("route \"{0}\" is not NUMBER=ROOM")]
    Syntax(String),
    /// A number or room name with characters a URI user part or a room name cannot hold.
    #[error("route \"{0}\": numbers are 1-64 of letters, digits and -_.+*#@; rooms 1-64 of letters, digits and -_. not starting with _")]
    Characters(String),
}

/// Dialled number (or `user@host`) → room.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DialPlan {
    routes: BTreeMap<String, String>,
}

fn valid(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.+*#@".contains(c))
}

impl DialPlan {
    /// An empty plan: every number is unknown.
    pub fn new() -> DialPlan {
        DialPlan::default()
    }

    /// Parses `NUMBER=ROOM` entries.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<DialPlan, RouteError> {
        let mut plan = DialPlan::new();
        for e in entries {
            let (number, room) = e.split_once('=').ok_or_else(|| RouteError::Syntax(e.into()))?;
            plan.set(number.trim(), room.trim())?;
        }
        Ok(plan)
    }

    /// Adds or replaces a route.
    pub fn set(&mut self, number: &str, room: &str) -> Result<(), RouteError> {
        let room_ok = valid(room) && room.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) && !room.starts_with('_');
        if !valid(number) || !room_ok {
            return Err(RouteError::Characters(format!("{number}={room}")));
        }
        self.routes.insert(number.to_string(), room.to_string());
        Ok(())
    }

    /// Removes a route; false if there was none.
    pub fn remove(&mut self, number: &str) -> bool {
        self.routes.remove(number).is_some()
    }

    /// The room for a call to `user@host`: the entry for `user@host` first, then `user`.
    pub fn route(&self, user: &str, host: &str) -> Option<&str> {
        self.routes.get(&format!("{user}@{host}")).or_else(|| self.routes.get(user)).map(String::as_str)
    }

    /// Every route, sorted by number.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.routes.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_user_and_by_full_uri() {
        let plan = DialPlan::parse(["1000=class-a", "sales@pbx.example=sales", "2000 = b"]).unwrap();
        assert_eq!(plan.route("1000", "10.0.0.1"), Some("class-a"));
        assert_eq!(plan.route("sales", "pbx.example"), Some("sales"));
        assert_eq!(plan.route("sales", "other"), None);
        assert_eq!(plan.route("2000", "x"), Some("b"));
        assert_eq!(plan.route("3000", "x"), None);
    }

    #[test]
    fn bad_entries_are_refused() {
        assert_eq!(DialPlan::parse(["1000"]), Err(RouteError::Syntax("1000".into())));
        assert!(DialPlan::parse(["1000=room a"]).is_err());
        assert!(DialPlan::parse(["=room"]).is_err());
        assert!(DialPlan::parse(["1000=_mix"]).is_err());
        assert!(DialPlan::parse(["1000=a#b"]).is_err());
        assert!(DialPlan::parse(["+4930*1#=a.b-c_d"]).is_ok());
        let mut plan = DialPlan::parse(["1=a"]).unwrap();
        assert!(plan.remove("1"));
        assert!(!plan.remove("1"));
        assert_eq!(plan.entries().count(), 0);
    }
}
