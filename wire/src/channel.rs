use std::fmt;

/// A validated channel name, `{circuit}/{parameter}`.
///
/// Both parts are 1 to 64 characters of ASCII letters, digits, `_`, `-` and
/// `.`, so a name is safe in an MQTT topic, a URL, a CSV cell and a file name
/// without escaping.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelName {
    full: String,
    split: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelNameError {
    MissingSlash,
    EmptyPart,
    TooLong,
    BadCharacter(char),
}

impl fmt::Display for ChannelNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingSlash => f.write_str("channel must be `{circuit}/{parameter}`"),
            Self::EmptyPart => f.write_str("circuit and parameter must not be empty"),
            Self::TooLong => f.write_str("circuit and parameter are at most 64 characters each"),
            Self::BadCharacter(c) => write!(
                f,
                "character {c:?} is not allowed in a channel name (letters, digits, `_`, `-`, `.`)"
            ),
        }
    }
}

impl std::error::Error for ChannelNameError {}

const MAX_PART: usize = 64;

fn check_part(part: &str) -> Result<(), ChannelNameError> {
    if part.is_empty() {
        return Err(ChannelNameError::EmptyPart);
    }
    if part.len() > MAX_PART {
        return Err(ChannelNameError::TooLong);
    }
    match part
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        Some(c) => Err(ChannelNameError::BadCharacter(c)),
        None => Ok(()),
    }
}

impl ChannelName {
    pub fn parse(name: &str) -> Result<Self, ChannelNameError> {
        let (circuit, parameter) = name.split_once('/').ok_or(ChannelNameError::MissingSlash)?;
        Self::from_parts(circuit, parameter)
    }

    pub fn from_parts(circuit: &str, parameter: &str) -> Result<Self, ChannelNameError> {
        check_part(circuit)?;
        check_part(parameter)?;
        Ok(Self {
            full: format!("{circuit}/{parameter}"),
            split: circuit.len(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.full
    }

    pub fn circuit(&self) -> &str {
        &self.full[..self.split]
    }

    pub fn parameter(&self) -> &str {
        &self.full[self.split + 1..]
    }

    pub fn into_string(self) -> String {
        self.full
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

/// Glob match where `*` stands for any run of characters (including `/`).
/// Channel names are short, so the plain backtracking walk is cheap.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let mut resume: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            resume = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((star, matched)) = resume {
            pi = star + 1;
            ni = matched + 1;
            resume = Some((star, matched + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_circuit_and_parameter() {
        let name = ChannelName::parse("T101/relay_voltage").unwrap();
        assert_eq!(name.circuit(), "T101");
        assert_eq!(name.parameter(), "relay_voltage");
        assert_eq!(name.as_str(), "T101/relay_voltage");
    }

    #[test]
    fn rejects_bad_names() {
        let cases = [
            ("T101", ChannelNameError::MissingSlash),
            ("/relay_state", ChannelNameError::EmptyPart),
            ("T101/", ChannelNameError::EmptyPart),
            ("T101/relay/state", ChannelNameError::BadCharacter('/')),
            ("T 101/relay_state", ChannelNameError::BadCharacter(' ')),
            ("T101/=cmd()", ChannelNameError::BadCharacter('=')),
        ];
        for (input, expected) in cases {
            assert_eq!(ChannelName::parse(input), Err(expected), "{input}");
        }
        let long = format!("{}/x", "a".repeat(65));
        assert_eq!(ChannelName::parse(&long), Err(ChannelNameError::TooLong));
    }

    #[test]
    fn glob_patterns() {
        let cases = [
            ("*", "T101/relay_state", true),
            ("T101/relay_state", "T101/relay_state", true),
            ("T101/relay_state", "T102/relay_state", false),
            ("T1*/relay_state", "T105/relay_state", true),
            ("T1*/relay_state", "T105/relay_voltage", false),
            ("*/relay_*", "T9/relay_current", true),
            ("*voltage", "T9/feed_voltage", true),
            ("T*1*", "T2/x", false),
            ("", "T2/x", false),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(
                pattern_matches(pattern, name),
                expected,
                "{pattern} ~ {name}"
            );
        }
    }
}
