//! Rate control of a shared encode: it follows the lowest bandwidth estimate (REMB) of those
//! who receive it and the loss they report, under its profile's bitrate.

use std::time::Duration;

/// How often shared encodes are fitted to their viewers' estimates (and simulcast caps to
/// tile sizes).
pub const RATE_CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// A REMB older than this no longer holds an encode down (browsers send one a second).
pub const ESTIMATE_MAX_AGE: Duration = Duration::from_secs(5);
/// The least an estimate may push an encode to.
pub const MIN_VIDEO_BITRATE: u32 = 100_000;

/// An encode's bitrate for the lowest estimate among its receivers: 90 % of it (the rest for
/// audio and overhead), at least [`MIN_VIDEO_BITRATE`], at most the profile's `max`.
pub fn shared_encode_bitrate(max: u32, estimate: Option<u64>) -> u32 {
    match estimate {
        Some(e) => ((e * 9 / 10).min(max as u64) as u32).max(MIN_VIDEO_BITRATE.min(max)),
        None => max,
    }
}

/// The loss-based rule of Google congestion control (draft-ietf-rmcat-gcc §6) for one receiver
/// report: more than 10 % lost cuts the rate by half the loss, less than 2 % raises it by 8 %,
/// between holds it; within [`MIN_VIDEO_BITRATE`] and `max`.
pub fn loss_based_bitrate(rate: u32, max: u32, fraction_lost: u8) -> u32 {
    let loss = fraction_lost as f64 / 256.0;
    let next = if loss > 0.10 {
        rate as f64 * (1.0 - 0.5 * loss)
    } else if loss < 0.02 {
        rate as f64 * 1.08
    } else {
        rate as f64
    };
    (next as u32).clamp(MIN_VIDEO_BITRATE.min(max), max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_moves_the_rate_as_gcc_does() {
        assert_eq!(loss_based_bitrate(1_000_000, 2_000_000, 64), 875_000, "25 % lost: down by 12.5 %");
        assert_eq!(loss_based_bitrate(1_000_000, 2_000_000, 13), 1_000_000, "5 % lost: held");
        assert_eq!(loss_based_bitrate(1_000_000, 2_000_000, 0), 1_080_000, "no loss: up by 8 %");
        assert_eq!(loss_based_bitrate(1_950_000, 2_000_000, 0), 2_000_000, "never above the profile");
        assert_eq!(loss_based_bitrate(101_000, 2_000_000, 255), MIN_VIDEO_BITRATE, "a floor");
        let mut r = 1_200_000;
        for _ in 0..10 {
            r = loss_based_bitrate(r, 1_200_000, 64);
        }
        assert!((300_000..330_000).contains(&r), "ten reports of 25 % loss: {r}");
    }

    #[test]
    fn a_shared_encode_stays_under_the_lowest_estimate() {
        assert_eq!(shared_encode_bitrate(2_000_000, None), 2_000_000, "no estimate: the profile's bitrate");
        assert_eq!(shared_encode_bitrate(2_000_000, Some(1_000_000)), 900_000, "90 % of the estimate");
        assert_eq!(shared_encode_bitrate(2_000_000, Some(50_000_000)), 2_000_000, "never above the profile");
        assert_eq!(shared_encode_bitrate(2_000_000, Some(10_000)), MIN_VIDEO_BITRATE, "a floor");
        assert_eq!(shared_encode_bitrate(80_000, Some(10_000)), 80_000, "a profile below the floor keeps its own");
    }
}
