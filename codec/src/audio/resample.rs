//! Sample-rate conversion between 8, 16 and 48 kHz (G.711, wideband SIP, Opus).
//!
//! Every pair of these rates is an integer ratio, so the converter is a polyphase FIR: a
//! Blackman-windowed sinc low-pass designed at the higher rate, cut off below the lower
//! rate's Nyquist frequency (so downsampling does not alias), evaluated only at the output
//! instants. dasp supplies the sample conversions and the per-channel history
//! (`dasp::ring_buffer::Fixed`). dasp's own `Sinc` interpolator was not used: it
//! recomputes sines per tap and sample and does not low-pass when downsampling, so 48 → 8 kHz
//! would fold everything above 4 kHz into the telephone band.
//!
//! Streaming: feed any number of samples per call; state carries over. The delay is half the
//! filter (about 4 ms).

use dasp::{Sample, ring_buffer::Fixed};

use super::AudioOpenError;

/// Rates the converter accepts.
pub const RATES: [u32; 3] = [8_000, 16_000, 48_000];

/// A streaming converter from one rate to another, for interleaved mono or stereo `i16`.
pub struct Resampler {
    from: u32,
    to: u32,
    channels: usize,
    up: usize,
    down: usize,
    /// `phases[p][m]`: coefficient of history sample `m` (oldest first) for phase `p`.
    phases: Vec<Vec<f32>>,
    history: Vec<Fixed<Vec<f32>>>,
    /// High-rate time of the next output, relative to the newest input sample.
    next: usize,
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl Resampler {
    /// A converter from `from` Hz to `to` Hz (each one of [`RATES`]) for `channels` (1 or 2)
    /// interleaved channels. Equal rates pass samples through.
    pub fn new(from: u32, to: u32, channels: usize) -> Result<Resampler, AudioOpenError> {
        if !RATES.contains(&from) || !RATES.contains(&to) {
            return Err(AudioOpenError::InvalidConfig(format!("resampling {from} Hz to {to} Hz: rates must be one of {RATES:?}")));
        }
        if !(1..=2).contains(&channels) {
            return Err(AudioOpenError::InvalidConfig(format!("resampling {channels} channels: 1 or 2 are supported")));
        }
        let g = gcd(from, to);
        let (up, down) = ((to / g) as usize, (from / g) as usize);
        // Taps at the high rate: 64 per unit of the larger ratio gives a transition band of
        // ~690 Hz at 48 kHz (Blackman: 5.5 × rate / taps).
        let per_phase = 64 * up.max(down) / up;
        let n = per_phase * up;
        let high = (from as usize * up) as f64;
        let transition = 5.5 * high / n as f64;
        let cutoff = 0.5 * from.min(to) as f64 - transition / 2.0;
        let fc = cutoff / high; // cycles per high-rate sample
        let mid = (n - 1) as f64 / 2.0;
        let mut h: Vec<f64> = (0..n)
            .map(|i| {
                let x = i as f64 - mid;
                let sinc = if x == 0.0 { 2.0 * fc } else { (2.0 * std::f64::consts::PI * fc * x).sin() / (std::f64::consts::PI * x) };
                let w = 0.42 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / (n - 1) as f64).cos()
                    + 0.08 * (4.0 * std::f64::consts::PI * i as f64 / (n - 1) as f64).cos();
                sinc * w
            })
            .collect();
        // Unity gain at DC after zero-stuffing by `up`.
        let sum: f64 = h.iter().sum();
        for c in &mut h {
            *c *= up as f64 / sum;
        }
        let phases = (0..up).map(|p| (0..per_phase).map(|m| h[p + (per_phase - 1 - m) * up] as f32).collect()).collect();
        let history = (0..channels).map(|_| Fixed::from(vec![0.0f32; per_phase])).collect();
        Ok(Resampler { from, to, channels, up, down, phases, history, next: 0 })
    }

    /// Input rate (Hz).
    pub fn from_rate(&self) -> u32 {
        self.from
    }

    /// Output rate (Hz).
    pub fn to_rate(&self) -> u32 {
        self.to
    }

    /// Converts `input` (interleaved, a whole number of frames; a trailing partial frame is
    /// ignored) and returns what is ready.
    pub fn process(&mut self, input: &[i16]) -> Vec<i16> {
        if self.from == self.to {
            return input[..input.len() / self.channels * self.channels].to_vec();
        }
        let frames = input.len() / self.channels;
        let mut out = Vec::with_capacity(frames * self.up / self.down * self.channels + self.channels * 2);
        for frame in input.chunks_exact(self.channels) {
            for (c, &s) in frame.iter().enumerate() {
                self.history[c].push(s.to_sample::<f32>());
            }
            // Outputs whose newest contributing input is this one: high-rate times in [0, up).
            while self.next < self.up {
                let taps = &self.phases[self.next];
                for hist in &self.history {
                    let (a, b) = hist.slices();
                    let (ta, tb) = taps.split_at(a.len());
                    let acc: f32 = a.iter().zip(ta).map(|(x, h)| x * h).sum::<f32>() + b.iter().zip(tb).map(|(x, h)| x * h).sum::<f32>();
                    out.push(acc.clamp(-1.0, 1.0).to_sample::<i16>());
                }
                self.next += self.down;
            }
            self.next -= self.up;
        }
        out
    }
}
