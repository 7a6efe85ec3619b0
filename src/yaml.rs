//! The one place that names the YAML crate, so it can be swapped for a fork in one line.

pub use serde_yaml::Value;

/// What is wrong with a YAML text or key path; the message carries line and column when the
/// parser gives them.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct YamlError(pub String);

/// Parses a YAML document; the message carries line and column.
pub fn parse(text: &str) -> Result<Value, YamlError> {
    serde_yaml::from_str(text).map_err(|e| YamlError(e.to_string()))
}

/// Deserialises `value`, reporting the dotted key path of the first problem.
pub fn from_value_with_path<T: serde::de::DeserializeOwned>(
    value: Value,
) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        (
            if path == "." {
                "<top level>".into()
            } else {
                path
            },
            message,
        )
    })
}

/// Sets `dotted.key.path` to `value`, creating mappings on the way.
pub fn set_path(doc: &mut Value, dotted: &str, value: Value) -> Result<(), YamlError> {
    let mut node = doc;
    let parts: Vec<&str> = dotted.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        if node.is_null() {
            *node = Value::Mapping(Default::default());
        }
        let map = node.as_mapping_mut().ok_or_else(|| {
            YamlError(format!(
                "`{}` is not a section, so it has no key `{part}`",
                parts[..i].join(".")
            ))
        })?;
        let key = Value::String(part.to_string());
        if i + 1 == parts.len() {
            map.insert(key, value);
            return Ok(());
        }
        node = map.entry(key).or_insert(Value::Null);
    }
    Ok(())
}

/// Parses a YAML document straight into `T`; the message carries line and column.
pub fn from_str<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    serde_yaml::from_str(text).map_err(|e| YamlError(e.to_string()))
}
/// A value that is not one of a setting's choices; the message says what was expected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct BadChoice(pub String);
