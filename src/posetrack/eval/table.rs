//! The tables poseval prints (`eval_helpers.py` `printTable`) and a JSON report.

use serde_json::{json, Value};

use super::{ApMetrics, EvalReport, MotMetrics, JOINT_NAMES, NUM_JOINTS};

/// Joint groups of the printed tables, as poseval's `getCum` (internal joint ids).
const GROUPS: [&[usize]; 7] = [
    &[14, 12, 13], // Head: head top, neck, nose
    &[8, 9],       // Shoulders
    &[7, 10],      // Elbows
    &[6, 11],      // Wrists
    &[2, 3],       // Hips
    &[1, 4],       // Knees
    &[0, 5],       // Ankles
];

const AP_HEADER: &str = "& Head & Shou & Elb  & Wri  & Hip  & Knee & Ankl & Total\\\\";
const MOT_HEADER: &str = "& MOTA & MOTA & MOTA & MOTA & MOTA & MOTA & MOTA & MOTA & MOTP & Prec & Rec  \\\\\n\
                          & Head & Shou & Elb  & Wri  & Hip  & Knee & Ankl & Total& Total& Total& Total\\\\";

/// Group means (a NaN member makes the group NaN, as numpy's `mean`).
fn grouped(per_joint: &[f64; NUM_JOINTS + 1]) -> Vec<f64> {
    GROUPS
        .iter()
        .map(|g| g.iter().map(|&j| per_joint[j]).sum::<f64>() / g.len() as f64)
        .collect()
}

/// `"{:>5}".format("%1.1f" % v)`.
fn cell(v: f64) -> String {
    let s = if v.is_nan() {
        "nan".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.to_string()
    } else {
        format!("{v:.1}")
    };
    format!("{s:>5}")
}

fn row(values: &[f64]) -> String {
    let mut s = String::from("&");
    for (i, v) in values.iter().enumerate() {
        s.push_str(&cell(*v));
        s.push_str(if i + 1 < values.len() { " &" } else { " \\\\" });
    }
    s
}

/// The AP table as poseval prints it (header line, value line, each ending in a newline).
pub fn ap_table(m: &ApMetrics) -> String {
    let mut values = grouped(&m.ap);
    values.push(m.ap[NUM_JOINTS]);
    format!("{AP_HEADER}\n{}\n", row(&values))
}

/// The MOT table as poseval prints it: MOTA per group and total, then total MOTP, precision, recall.
pub fn mot_table(m: &MotMetrics) -> String {
    let mut values = grouped(&m.mota);
    values.extend([
        m.mota[NUM_JOINTS],
        m.motp[NUM_JOINTS],
        m.precision[NUM_JOINTS],
        m.recall[NUM_JOINTS],
    ]);
    format!("{MOT_HEADER}\n{}\n", row(&values))
}

/// Per-joint values then the total, NaN as `null` (JSON has no NaN).
fn values(v: &[f64]) -> Value {
    Value::Array(
        v.iter()
            .map(|x| serde_json::Number::from_f64(*x).map_or(Value::Null, Value::Number))
            .collect(),
    )
}

fn names() -> Value {
    let mut n: Vec<&str> = JOINT_NAMES.to_vec();
    n.push("total");
    json!(n)
}

/// poseval's `total_AP_metrics.json` / `total_MOT_metrics.json` contents side by side, with the
/// names as a list in value order.
pub fn to_json(report: &EvalReport) -> Value {
    let ap = &report.ap;
    let mut out = json!({
        "names": names(),
        "ap": { "ap": values(&ap.ap), "pre": values(&ap.precision), "rec": values(&ap.recall),
                "num_gt_joints": ap.num_gt.to_vec() },
        "mot": Value::Null,
    });
    match &report.mot {
        Ok(m) => {
            out["mot"] = json!({
                "mota": values(&m.mota), "motp": values(&m.motp),
                "pre": values(&m.precision), "rec": values(&m.recall),
                "num_objects": m.counts.iter().map(|c| c.objects).collect::<Vec<_>>(),
                "num_matches": m.counts.iter().map(|c| c.matches).collect::<Vec<_>>(),
                "num_switches": m.counts.iter().map(|c| c.switches).collect::<Vec<_>>(),
                "num_misses": m.counts.iter().map(|c| c.misses).collect::<Vec<_>>(),
                "num_false_positives": m.counts.iter().map(|c| c.false_positives).collect::<Vec<_>>(),
            });
        }
        Err(reason) => out["mot_unavailable"] = json!(reason.to_string()),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_match_python_formatting() {
        assert_eq!(cell(100.0), "100.0");
        assert_eq!(cell(7.25), "  7.2");
        assert_eq!(cell(-3.0), " -3.0");
        assert_eq!(cell(f64::NAN), "  nan");
        assert_eq!(row(&[1.0, 2.0]), "&  1.0 &  2.0 \\\\");
    }
}
