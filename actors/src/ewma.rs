//! Exponentially weighted moving average: recent latency matters more than old.

/// Weight of each new sample. 0.2 follows a change within about ten samples
/// while one slow request moves the average by a fifth of its excess.
const ALPHA: f64 = 0.2;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Ewma {
    value: Option<f64>,
}

impl Ewma {
    /// The average so far; `None` before the first sample.
    pub fn value(self) -> Option<f64> {
        self.value
    }

    pub fn from_value(value: Option<f64>) -> Self {
        Ewma { value }
    }

    pub fn observe(&mut self, sample: f64) {
        self.value = Some(match self.value {
            None => sample,
            Some(old) => old + ALPHA * (sample - old),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_first_sample_and_moves_towards_new_ones() {
        let mut ewma = Ewma::default();
        assert_eq!(ewma.value(), None);
        ewma.observe(10.0);
        assert_eq!(ewma.value(), Some(10.0));
        ewma.observe(20.0);
        assert_eq!(ewma.value(), Some(12.0));
        for _ in 0..100 {
            ewma.observe(20.0);
        }
        assert!((ewma.value().unwrap() - 20.0).abs() < 1e-6);
    }
}
