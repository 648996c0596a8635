//! What anomaly learns from the bytes: a magic-byte type from the first
//! [`SNIFF_LEN`] bytes and a byte histogram over the first `sample` bytes. Pure.

use strongroom_magic::{FileType, SNIFF_LEN, sniff};

pub struct Observer {
    head: Vec<u8>,
    histogram: [u64; 256],
    sampled: u64,
    sample: u64,
}

impl Observer {
    pub fn new(sample: u64) -> Observer {
        Observer {
            head: Vec::with_capacity(SNIFF_LEN),
            histogram: [0; 256],
            sampled: 0,
            sample,
        }
    }

    /// Takes a chunk; true once both the head and the sample are complete.
    pub fn feed(&mut self, chunk: &[u8]) -> bool {
        if self.head.len() < SNIFF_LEN {
            let take = chunk.len().min(SNIFF_LEN - self.head.len());
            self.head.extend_from_slice(&chunk[..take]);
        }
        let take = chunk.len().min((self.sample - self.sampled) as usize);
        for &b in &chunk[..take] {
            self.histogram[usize::from(b)] += 1;
        }
        self.sampled += take as u64;
        self.head.len() >= SNIFF_LEN && self.sampled >= self.sample
    }

    pub fn detected(&self) -> FileType {
        sniff(&self.head)
    }

    /// Bytes the entropy is computed over.
    pub fn sampled(&self) -> u64 {
        self.sampled
    }

    /// Shannon entropy of the sample in bits per byte (0 to 8).
    pub fn entropy(&self) -> f64 {
        shannon_entropy(&self.histogram, self.sampled)
    }
}

pub fn shannon_entropy(histogram: &[u64; 256], total: u64) -> f64 {
    if total == 0 {
        return 0.0;
    }
    let n = total as f64;
    histogram
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_bounds() {
        let mut o = Observer::new(1 << 20);
        o.feed(&[b'a'; 10_000]);
        assert_eq!(o.entropy(), 0.0);
        let mut o = Observer::new(1 << 20);
        let all: Vec<u8> = (0..=255u8).cycle().take(256 * 64).collect();
        o.feed(&all);
        assert!((o.entropy() - 8.0).abs() < 1e-9);
    }

    #[test]
    fn stops_sampling_at_the_limit() {
        let mut o = Observer::new(10_000);
        assert!(!o.feed(&[0u8; 6_000]));
        assert!(o.feed(&[1u8; 6_000]));
        assert_eq!(o.sampled(), 10_000);
        assert_eq!(o.detected(), FileType::Unknown);
    }
}
