//! The PoseTrack18 keypoint set: the 17 joints' names and order, the flip test's left/right
//! pairs, the OKS sigmas and the skeletons. The pose model, the tracker, the renderer and the
//! PoseTrack format all read it from here.

/// Keypoints per person.
pub const NUM_KEYPOINTS: usize = 17;

/// The 17 PoseTrack 2018 keypoints, in array order.
pub const KEYPOINT_NAMES: [&str; NUM_KEYPOINTS] = [
    "nose",
    "head_bottom",
    "head_top",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
];

/// COCO skeleton as stored in the PoseTrack files (1-based keypoint indices).
pub const SKELETON: [[u32; 2]; 19] = [
    [16, 14],
    [14, 12],
    [17, 15],
    [15, 13],
    [12, 13],
    [6, 12],
    [7, 13],
    [6, 7],
    [6, 8],
    [7, 9],
    [8, 10],
    [9, 11],
    [2, 3],
    [1, 2],
    [1, 3],
    [2, 4],
    [3, 5],
    [4, 6],
    [5, 7],
];

/// Left/right swap used by the flip test.
pub const FLIP_INDICES: [usize; NUM_KEYPOINTS] =
    [0, 1, 2, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15];

/// OKS sigmas of the PoseTrack18 dataset meta.
pub const OKS_SIGMAS: [f32; NUM_KEYPOINTS] = [
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107,
    0.087, 0.087, 0.089, 0.089,
];

/// The skeleton MMPose draws for PoseTrack18 (its dataset meta's `skeleton_info`; 0-based
/// keypoint pairs), which differs from the files' `SKELETON`.
pub const DRAWING_LINKS: [(usize, usize); 16] = [
    (15, 13),
    (13, 11),
    (16, 14),
    (14, 12),
    (11, 12),
    (5, 11),
    (6, 12),
    (5, 6),
    (5, 7),
    (6, 8),
    (7, 9),
    (8, 10),
    (0, 1),
    (0, 2),
    (1, 5),
    (1, 6),
];
