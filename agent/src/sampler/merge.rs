//! Hands out the records of several rings in time order.
//!
//! Each CPU's ring is in time order by itself, but a thread that maps a library on one CPU can
//! be sampled running it on another: handing rings out one after the other would show the
//! sample before the mapping. Merging by timestamp keeps cause before effect.

use super::record;
use super::ring::RecordCursor;

/// Visits every record of every cursor, earliest first (ties: lower cursor index first), until
/// `visit` returns false (the records left stay in the rings, for the next drain).
/// Records whose time cannot be read sort first, so they are dealt with (and counted) at once.
pub(crate) fn in_time_order(
    cursors: &mut [&mut RecordCursor<'_>],
    mut visit: impl FnMut(&[u8]) -> bool,
) {
    let mut keys: Vec<Option<u64>> = cursors.iter_mut().map(|cursor| next_key(cursor)).collect();
    while let Some(earliest) = earliest(&keys) {
        let Some(cursor) = cursors.get_mut(earliest) else {
            break;
        };
        let go_on = cursor.peek().is_none_or(&mut visit);
        cursor.advance();
        keys[earliest] = next_key(cursor);
        if !go_on {
            break;
        }
    }
}

fn next_key(cursor: &mut RecordCursor<'_>) -> Option<u64> {
    cursor
        .peek()
        .map(|bytes| record::timestamp(bytes).unwrap_or(0))
}

fn earliest(keys: &[Option<u64>]) -> Option<usize> {
    keys.iter()
        .enumerate()
        .filter_map(|(index, key)| Some((key.as_ref()?, index)))
        .min()
        .map(|(_, index)| index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::record::tests::sample_record;
    use crate::sampler::ring::DataArea;

    fn area_of(records: &[Vec<u8>]) -> Vec<u8> {
        let mut area: Vec<u8> = records.concat();
        area.resize(area.len().next_power_of_two().max(64), 0);
        area
    }

    #[test]
    fn records_of_two_rings_interleave_by_time() {
        let first = [sample_record(1, 10, &[], 0), sample_record(1, 30, &[], 0)];
        let second = [sample_record(2, 20, &[], 0), sample_record(2, 40, &[], 0)];
        let (area_a, area_b) = (area_of(&first), area_of(&second));
        let head_a = first.concat().len() as u64;
        let head_b = second.concat().len() as u64;
        let (mut scratch_a, mut scratch_b) = (Vec::new(), Vec::new());
        let mut a = RecordCursor::new(DataArea::from_slice(&area_a), 0, head_a, &mut scratch_a);
        let mut b = RecordCursor::new(DataArea::from_slice(&area_b), 0, head_b, &mut scratch_b);
        let mut times = Vec::new();
        in_time_order(&mut [&mut a, &mut b], |bytes| {
            times.push(record::timestamp(bytes).unwrap());
            true
        });
        assert_eq!(times, [10, 20, 30, 40]);
        assert_eq!((a.position(), b.position()), (head_a, head_b));
    }

    #[test]
    fn a_visit_can_stop_the_merge_and_leave_the_rest() {
        let first = [sample_record(1, 10, &[], 0), sample_record(1, 30, &[], 0)];
        let area = area_of(&first);
        let head = first.concat().len() as u64;
        let mut scratch = Vec::new();
        let mut a = RecordCursor::new(DataArea::from_slice(&area), 0, head, &mut scratch);
        let mut visited = 0;
        in_time_order(&mut [&mut a], |_| {
            visited += 1;
            false
        });
        assert_eq!(visited, 1);
        assert_eq!(a.position(), first[0].len() as u64, "the second is left");
    }

    #[test]
    fn no_cursors_no_records() {
        in_time_order(&mut [], |_| panic!("nothing to visit"));
    }
}
