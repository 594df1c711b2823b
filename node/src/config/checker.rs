//! Collects every problem of a config file, so one run names them all.

use super::env::expand;
use super::Problem;

pub struct Checker<'a> {
    problems: Vec<Problem>,
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Checker<'a> {
    pub fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Checker {
            problems: Vec::new(),
            lookup,
        }
    }

    /// Notes a problem with `field` (a dotted path such as
    /// `providers[1].base_url`) and what to do about it.
    pub fn problem(&mut self, field: impl Into<String>, problem: impl Into<String>) {
        self.problems.push(Problem {
            field: field.into(),
            problem: problem.into(),
        });
    }

    /// `value` with `${VAR}` expanded; `None` (and a problem noted) when
    /// it cannot be.
    pub fn expand(&mut self, field: &str, value: &str) -> Option<String> {
        match expand(value, self.lookup) {
            Ok(expanded) => Some(expanded),
            Err(problem) => {
                self.problem(field, problem);
                None
            }
        }
    }

    pub fn into_problems(self) -> Vec<Problem> {
        self.problems
    }
}
