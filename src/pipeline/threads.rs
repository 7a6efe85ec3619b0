//! How a run shares the machine's cores: one compute pool for the models, a few FFmpeg
//! decoding threads, and stage threads that mostly wait.
//!
//! The detector and the pose model run their kernels on the same rayon pool, sized to the
//! cores: work-stealing lets whichever model has work use every core, where a fixed split
//! would leave one model's cores idle while the other is starved. Decoding gets a small
//! share: when models run, the frame rate they allow is what decoding has to keep up with,
//! and a full set of FFmpeg frame threads beside a full compute pool would oversubscribe the
//! cores while decoding bursts. The stage threads (source, trackers, sinks) hold no compute
//! of their own.

/// The split of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadBudget {
    /// Cores the run may use.
    pub cores: usize,
    /// Threads of the compute pool the models share.
    pub compute: usize,
    /// FFmpeg decoding threads per video.
    pub decode: usize,
}

impl ThreadBudget {
    /// The split for `threads` cores (0: `RAYON_NUM_THREADS` when set, else every core),
    /// `decode_threads` FFmpeg threads (0: the automatic share) and whether a model runs.
    pub fn new(threads: usize, decode_threads: usize, models: bool) -> Self {
        let from_env = || {
            std::env::var("RAYON_NUM_THREADS")
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|&n| n > 0)
        };
        let cores = if threads > 0 {
            threads
        } else {
            from_env()
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        };
        let decode = match (decode_threads, models) {
            (0, true) => (cores / 8).clamp(1, 4),
            (0, false) => cores,
            (n, _) => n,
        };
        Self {
            cores,
            compute: cores,
            decode,
        }
    }

    /// FFmpeg threads for each of `inputs` videos decoded at once: the automatic share
    /// (`decode_threads` 0) is split among them, at least one each; a number set by the user is
    /// per video, as it says.
    pub fn decode_per_input(&self, decode_threads: usize, inputs: usize) -> usize {
        match decode_threads {
            0 => (self.decode / inputs.max(1)).max(1),
            n => n,
        }
    }

    /// Sizes the process's compute pool (once per process: rayon's global pool cannot be
    /// resized, so a later run with another size keeps the first, and says so).
    pub fn apply(&self) {
        let built = rayon::ThreadPoolBuilder::new()
            .num_threads(self.compute)
            .thread_name(|i| format!("vidpose-compute-{i}"))
            .build_global();
        let current = rayon::current_num_threads();
        if built.is_err() && current != self.compute {
            tracing::warn!(
                "the compute pool already has {current} threads (set once per process); pipeline.threads asks for {}",
                self.compute
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_gets_a_small_share_when_models_run() {
        assert_eq!(
            ThreadBudget::new(2, 0, true),
            ThreadBudget {
                cores: 2,
                compute: 2,
                decode: 1
            }
        );
        assert_eq!(ThreadBudget::new(16, 0, true).decode, 2);
        assert_eq!(ThreadBudget::new(64, 0, true).decode, 4);
        // Decoding alone (boxes only, no pose model) takes every core.
        assert_eq!(ThreadBudget::new(16, 0, false).decode, 16);
        // An explicit setting wins.
        assert_eq!(ThreadBudget::new(16, 3, true).decode, 3);
        assert!(ThreadBudget::new(0, 0, true).cores >= 1);
    }

    #[test]
    fn the_automatic_decoding_share_is_split_among_inputs_in_flight() {
        let budget = ThreadBudget::new(32, 0, true);
        assert_eq!(budget.decode_per_input(0, 1), 4);
        assert_eq!(budget.decode_per_input(0, 2), 2);
        // Every input gets a thread, whatever the share.
        assert_eq!(budget.decode_per_input(0, 16), 1);
        assert_eq!(budget.decode_per_input(3, 16), 3);
    }
}
