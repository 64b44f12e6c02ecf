//! An error with its chain of sources, as one line: what a status message or
//! a log line should carry, since errors keep their causes as `#[source]`
//! rather than in their own message.
use std::{error::Error, fmt};

/// Displays `error` followed by each of its sources: `a: b: c`.
pub struct Chain<'a>(pub &'a (dyn Error + 'a));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot start")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("the port is taken")]
    struct Inner;

    #[test]
    fn every_source_follows_the_error() {
        assert_eq!(Chain(&Outer(Inner)).to_string(), "cannot start: the port is taken");
        assert_eq!(Chain(&Inner).to_string(), "the port is taken");
    }
}
