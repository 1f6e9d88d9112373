//! A blocked Bloom filter of 64-bit keys that are hashes already (`events::event_key`,
//! `ledger::row_key`: xxh3, uniform). Each key's bits all lie in one 64-byte block, so an
//! insert or a lookup reads one cache line where a classic Bloom filter (fastbloom, used
//! before) reads one per hash: at 10 bits a key, seven random lines an insert and two a
//! lookup on average, which made the filter a tenth of a 10M import's writer time (issue 14:
//! 126 ns a lookup in a 12 MiB filter). The price is a little accuracy at the same size: some
//! 1.0% false positives at 10 bits a key instead of 0.8% (this module's test measures
//! 1.03%), and the same 39% at 2 bits a key, where a key sets one bit either way. No maintained crate offers this
//! for prehashed keys with inserts after building (sbbf-rs-safe: last release 2023).

/// Bits of a block: one cache line.
const BLOCK_BITS: u64 = 512;
const BLOCK_WORDS: usize = (BLOCK_BITS / 64) as usize;
/// The most bits a key sets: seven 9-bit positions in one 64-bit mix of the key.
const MAX_HASHES: u32 = 7;

/// A set of keys that may say "maybe" for a key it does not hold, never "no" for one it does.
pub(super) struct KeyFilter {
    /// The blocks, from `offset` on: zeroed by the allocator (pages are touched only once a
    /// key lands in them), with `offset` words skipped so that each block starts a cache line.
    words: Vec<u64>,
    offset: usize,
    blocks: u64,
    hashes: u32,
}

impl KeyFilter {
    /// A filter of `bits` bits (rounded up to whole blocks, at least one) for some
    /// `expected_keys`, which set its bits a key (bits ÷ keys × ln 2, 1 to 7).
    pub(super) fn new(bits: u64, expected_keys: u64) -> KeyFilter {
        let blocks = bits.div_ceil(BLOCK_BITS).max(1);
        let words = vec![0u64; blocks as usize * BLOCK_WORDS + BLOCK_WORDS - 1];
        let misalignment = (words.as_ptr() as usize / 8) % BLOCK_WORDS;
        let offset = (BLOCK_WORDS - misalignment) % BLOCK_WORDS;
        let bits_a_key = (blocks * BLOCK_BITS) as f64 / expected_keys.max(1) as f64;
        let hashes = (bits_a_key * std::f64::consts::LN_2)
            .round()
            .clamp(1.0, MAX_HASHES as f64) as u32;
        KeyFilter {
            words,
            offset,
            blocks,
            hashes,
        }
    }

    /// The first word of `key`'s block and the mix its positions in that block come from.
    fn place(&self, key: u64) -> (usize, u64) {
        // The block from the key's high bits (multiply-shift: no division), the positions
        // from a bijective mix of all of them (splitmix64's finaliser), so the two are as good
        // as independent.
        let block = ((key as u128 * self.blocks as u128) >> 64) as usize;
        let mut mix = key ^ (key >> 30);
        mix = mix.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mix ^= mix >> 27;
        mix = mix.wrapping_mul(0x94d0_49bb_1331_11eb);
        mix ^= mix >> 31;
        (self.offset + block * BLOCK_WORDS, mix)
    }

    /// Adds a key.
    pub(super) fn insert(&mut self, key: u64) {
        let (first, mut mix) = self.place(key);
        for _ in 0..self.hashes {
            let bit = mix & (BLOCK_BITS - 1);
            self.words[first + (bit / 64) as usize] |= 1 << (bit % 64);
            mix >>= 9;
        }
    }

    /// Whether the filter may hold `key`: `false` is certain.
    pub(super) fn contains(&self, key: u64) -> bool {
        let (first, mut mix) = self.place(key);
        for _ in 0..self.hashes {
            let bit = mix & (BLOCK_BITS - 1);
            if self.words[first + (bit / 64) as usize] & (1 << (bit % 64)) == 0 {
                return false;
            }
            mix >>= 9;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The share of `absent` keys a filter of `bits_a_key` holding `present` says "maybe" for,
    /// after checking it says "maybe" for every present key.
    fn false_positives(bits_a_key: u64, present: usize, seed: u64) -> f64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let keys: Vec<u64> = (0..present).map(|_| rng.u64(..)).collect();
        let mut filter = KeyFilter::new(bits_a_key * present as u64, present as u64);
        for &key in &keys {
            filter.insert(key);
        }
        assert!(
            keys.iter().all(|&key| filter.contains(key)),
            "never \"absent\" for a key it holds"
        );
        let held: std::collections::HashSet<u64> = keys.into_iter().collect();
        let absent: Vec<u64> = (0..200_000)
            .map(|_| rng.u64(..))
            .filter(|k| !held.contains(k))
            .collect();
        absent.iter().filter(|&&key| filter.contains(key)).count() as f64 / absent.len() as f64
    }

    /// At the filter's usual 10 bits a key, close to a classic Bloom filter's 0.8%.
    #[test]
    fn ten_bits_a_key_let_through_about_one_absent_key_in_a_hundred() {
        let rate = false_positives(10, 100_000, 1);
        assert!(rate < 0.014, "{:.2}% of absent keys were \"maybe\"", rate * 100.0);
    }

    /// At a cap's 2 bits a key (a 100M import), one bit a key: a classic filter's 39%.
    #[test]
    fn two_bits_a_key_set_one_bit_and_let_through_some_two_in_five() {
        let filter = KeyFilter::new(2 * 100_000, 100_000);
        assert_eq!(filter.hashes, 1);
        let rate = false_positives(2, 100_000, 2);
        assert!(
            (0.35..0.43).contains(&rate),
            "{:.1}% of absent keys were \"maybe\"",
            rate * 100.0
        );
    }

    /// Each block starts a cache line, whatever address the allocator gave.
    #[test]
    fn blocks_start_on_cache_lines() {
        for keys in [1, 100, 5000] {
            let filter = KeyFilter::new(10 * keys, keys);
            assert_eq!((filter.words[filter.offset..].as_ptr() as usize) % 64, 0);
            assert!(filter.words.len() >= filter.offset + filter.blocks as usize * BLOCK_WORDS);
        }
    }
}
