//! The concrete stages of a run, in chain order: decode (`source`), boxes from files
//! (`boxes`), the detector (`detect`), the pose model (`pose`), tracking (`track`). Each one
//! implements `crate::pipeline::stage::Stage` (or is the source) and knows nothing of the
//! configuration: `pipeline::build` gives it its settings.

pub(crate) mod boxes;
pub(crate) mod detect;
pub(crate) mod keyframe;
pub mod pose;
pub(crate) mod source;
pub(crate) mod track;
