//! The per-inspection state machine shared by the Wasm export glue and the native
//! test driver, so both treat `Enough` and early decisions the same way.

use crate::{Config, Feed, Outcome, Plugin, Summary, UploadMeta};

pub(crate) struct Driver<P> {
    plugin: P,
    state: State,
}

enum State {
    Feeding,
    /// The plugin said `Enough`: later chunks are not passed on.
    Enough,
    /// The plugin decided in `feed`; `finish` repeats that outcome.
    Decided(Outcome),
    Finished,
}

impl<P: Plugin> Driver<P> {
    /// Panics when the host's config text is unusable: a policy mistake becomes a
    /// `failed` verdict with the reason in the host log.
    pub(crate) fn new(meta: &UploadMeta, config_json: &str) -> Self {
        let config = Config::from_json(config_json).unwrap_or_else(|e| panic!("{e}"));
        Driver {
            plugin: P::new(meta, &config),
            state: State::Feeding,
        }
    }

    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Feed {
        match self.state {
            State::Feeding => {}
            State::Enough | State::Decided(_) | State::Finished => return Feed::Enough,
        }
        let answer = self.plugin.feed(chunk);
        match &answer {
            Feed::NeedMore => {}
            Feed::Enough => self.state = State::Enough,
            Feed::Decided(outcome) => self.state = State::Decided(outcome.clone()),
        }
        answer
    }

    pub(crate) fn finish(&mut self, summary: &Summary) -> Outcome {
        match std::mem::replace(&mut self.state, State::Finished) {
            State::Decided(outcome) => outcome,
            State::Feeding | State::Enough => self.plugin.finish(summary),
            State::Finished => panic!("finish called twice on one inspection"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Verdict;

    /// Counts calls; decides on the chunk equal to `b"stop"` or `b"decide"`.
    struct Probe {
        fed: usize,
    }

    impl Plugin for Probe {
        fn new(_: &UploadMeta, config: &Config) -> Self {
            Probe {
                fed: config.get_or("start", 0),
            }
        }

        fn feed(&mut self, chunk: &[u8]) -> Feed {
            self.fed += 1;
            match chunk {
                b"stop" => Feed::Enough,
                b"decide" => Feed::Decided(Outcome::quarantine("early")),
                _ => Feed::NeedMore,
            }
        }

        fn finish(&mut self, _: &Summary) -> Outcome {
            Outcome::accept().label("fed", self.fed.to_string())
        }
    }

    fn driver() -> Driver<Probe> {
        Driver::new(&UploadMeta::default(), r#"{"start": 100}"#)
    }

    #[test]
    fn enough_swallows_later_chunks() {
        let mut d = driver();
        assert_eq!(d.feed(b"a"), Feed::NeedMore);
        assert_eq!(d.feed(b"stop"), Feed::Enough);
        assert_eq!(d.feed(b"b"), Feed::Enough);
        assert_eq!(
            d.finish(&Summary::default()).label_value("fed"),
            Some("102")
        );
    }

    #[test]
    fn finish_repeats_an_early_decision() {
        let mut d = driver();
        assert!(matches!(d.feed(b"decide"), Feed::Decided(_)));
        assert_eq!(d.feed(b"more"), Feed::Enough);
        assert_eq!(
            d.finish(&Summary::default()).verdict,
            Verdict::Quarantine("early".into())
        );
    }

    #[test]
    #[should_panic(expected = "plugin config is not valid JSON")]
    fn unusable_config_text_panics() {
        let _ = Driver::<Probe>::new(&UploadMeta::default(), "{start");
    }
}
