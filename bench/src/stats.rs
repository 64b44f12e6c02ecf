//! Statistics over repeated runs: each figure the harness reports is the
//! median of its runs, so one disturbed run does not move it.

/// The median of `values` (the mean of the two middle values for an even
/// count), or `None` when there are none. NaNs are ignored.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|value| !value.is_nan()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 { sorted[middle] } else { (sorted[middle - 1] + sorted[middle]) / 2.0 })
}

/// `numerator / denominator`, or `None` when the denominator is zero or
/// either is not a number.
pub fn ratio(numerator: f64, denominator: f64) -> Option<f64> {
    let ratio = numerator / denominator;
    (denominator != 0.0 && ratio.is_finite()).then_some(ratio)
}

/// The `quantile` (0 to 1) of `values` by the nearest-rank method: the
/// smallest value with at least that share of the values at or below it;
/// `None` when there are none.
pub fn nearest_rank(values: &mut [u64], quantile: f64) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let rank = (quantile.clamp(0.0, 1.0) * values.len() as f64).ceil() as usize;
    Some(values[rank.clamp(1, values.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_picks_the_value_at_or_above_the_share() {
        let mut values: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(nearest_rank(&mut values, 0.99), Some(99));
        assert_eq!(nearest_rank(&mut values, 0.5), Some(50));
        assert_eq!(nearest_rank(&mut [7, 3], 0.99), Some(7));
        assert_eq!(nearest_rank(&mut [], 0.99), None);
    }

    #[test]
    fn the_median_of_an_odd_count_is_the_middle_value() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[7.5]), Some(7.5));
        assert_eq!(median(&[10.0, 1.0, 1000.0, 2.0, 3.0]), Some(3.0));
    }

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[1.0, 2.0]), Some(1.5));
    }

    #[test]
    fn no_values_have_no_median_and_nans_are_left_out() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN]), None);
        assert_eq!(median(&[f64::NAN, 5.0, 1.0, 3.0]), Some(3.0));
    }

    #[test]
    fn a_ratio_over_zero_is_none() {
        assert_eq!(ratio(1.0, 4.0), Some(0.25));
        assert_eq!(ratio(1.0, 0.0), None);
        assert_eq!(ratio(f64::NAN, 2.0), None);
    }
}
