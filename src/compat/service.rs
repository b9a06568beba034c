//! The rules of the OpenAI-compatible API: which agent a `model` names, and how a client's
//! messages become one confab turn.

use serde::Deserialize;
use uuid::Uuid;

use crate::agents::model::Agent;
use crate::chat::service::ClientTurn;
use crate::compat::error::OpenAiError;
use crate::conversations::model::Role;
use crate::db::{self, PgPool};
use crate::error::AppResult;
use crate::session::CurrentUser;

/// An agent as a model: its readable id and the agent.
pub struct AgentModel {
    /// `<project-slug>/<agent-slug>`, or the agent's UUID when two agents would share it.
    pub id: String,
    pub agent: Agent,
}

/// Lower-case ASCII letters and digits, other runs as one `-` (`"My chats"` → `my-chats`).
pub fn slug(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() {
        "unnamed".into()
    } else {
        slug.to_string()
    }
}

/// Every agent of the person as a model, projects oldest first. The readable id follows
/// renames; the UUID never changes, and is accepted too. When two agents would share a readable
/// id, the first listed (the older project's) keeps it and the other is known by its UUID, so
/// a new project never takes an id a client already uses.
pub fn agent_models(agents: Vec<(Agent, String)>) -> Vec<AgentModel> {
    let mut taken = std::collections::HashSet::new();
    agents
        .into_iter()
        .map(|(agent, project)| {
            let readable = format!("{}/{}", slug(&project), slug(&agent.name));
            let id = if taken.insert(readable.clone()) {
                readable
            } else {
                agent.id.to_string()
            };
            AgentModel { id, agent }
        })
        .collect()
}

/// The person's agents as models (one query).
pub async fn models(pool: &PgPool, user: &CurrentUser) -> AppResult<Vec<AgentModel>> {
    let owner = user.id;
    let agents = db::run(pool, move |conn| Ok(Agent::list_for_owner(conn, owner)?)).await?;
    Ok(agent_models(agents))
}

/// The agent `model` names (its UUID or its readable id), if it is the person's: `None` is
/// OpenAI's `model_not_found`.
pub async fn agent_for_model(
    pool: &PgPool,
    user: &CurrentUser,
    model: &str,
) -> AppResult<Option<AgentModel>> {
    let owner = user.id;
    let wanted = model.trim().to_string();
    let listed = db::run(pool, move |conn| Ok(Agent::list_for_owner(conn, owner)?)).await?;
    let by_uuid = Uuid::parse_str(&wanted).ok();
    Ok(agent_models(listed)
        .into_iter()
        .find(|m| m.id == wanted || Some(m.agent.id) == by_uuid))
}

/// A message's `content`: a string, or parts of which confab reads the text ones.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

/// One part of a message's content; only text parts (`text`, `input_text`, `output_text`) are
/// read.
#[derive(Debug, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

impl Content {
    /// The text of the content; `param` names it in an error.
    pub fn text(&self, param: &str) -> Result<String, OpenAiError> {
        match self {
            Content::Text(text) => Ok(text.clone()),
            Content::Parts(parts) => {
                let mut texts = Vec::with_capacity(parts.len());
                for (index, part) in parts.iter().enumerate() {
                    match (part.kind.as_str(), &part.text) {
                        ("text" | "input_text" | "output_text", Some(text)) => {
                            texts.push(text.as_str());
                        }
                        (kind, _) => {
                            return Err(OpenAiError::invalid(
                                format!("{param}[{index}]"),
                                format!(
                                    "confab agents read text only; a `{}` part is not supported.",
                                    crate::error::bounded(kind)
                                ),
                            ));
                        }
                    }
                }
                Ok(texts.join("\n"))
            }
        }
    }
}

/// A client's conversation as it sent it: system and developer messages, and the turns.
#[derive(Debug, Default)]
pub struct Incoming {
    pub instructions: Vec<String>,
    pub turns: Vec<(Role, String)>,
}

impl Incoming {
    /// Adds one message; `param` names it in an error (`messages[2]`).
    pub fn push(
        &mut self,
        param: &str,
        role: &str,
        content: Option<&Content>,
    ) -> Result<(), OpenAiError> {
        let text = match content {
            Some(content) => content.text(&format!("{param}.content"))?,
            None => String::new(),
        };
        // Earlier turns are stored as they come, and PostgreSQL text cannot hold NUL: refused
        // here, in the client's terms, rather than failing the insert.
        if text.contains('\0') {
            return Err(OpenAiError::invalid(
                format!("{param}.content"),
                "The content contains a NUL character, which cannot be stored.",
            ));
        }
        match role {
            "system" | "developer" => self.instructions.push(text),
            "user" => self.turns.push((Role::User, text)),
            "assistant" => self.turns.push((Role::Assistant, text)),
            other => {
                return Err(OpenAiError::invalid(
                    format!("{param}.role"),
                    format!(
                        "confab agents take system, developer, user and assistant messages, not `{}`.",
                        crate::error::bounded(other)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The message to send (the last one, which must be the user's) and what goes with it.
    /// `continuing`: the conversation is stored, so the client's earlier turns are not
    /// stored again (confab's stored history is what the agent gets); a new conversation
    /// stores them first, so the agent sees the client's whole history.
    pub fn into_turn(
        mut self,
        param: &str,
        continuing: bool,
    ) -> Result<(String, ClientTurn), OpenAiError> {
        let Some((Role::User, text)) = self.turns.pop() else {
            return Err(OpenAiError::invalid(
                param,
                "The last message must be the user's: it is the one the agent answers.",
            ));
        };
        let earlier = if continuing {
            Vec::new()
        } else {
            self.turns
                .into_iter()
                .filter(|(_, text)| !text.trim().is_empty())
                .collect()
        };
        let instructions = self
            .instructions
            .into_iter()
            .filter(|text| !text.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n\n");
        Ok((
            text,
            ClientTurn {
                earlier,
                instructions: (!instructions.is_empty()).then_some(instructions),
                ..ClientTurn::default()
            },
        ))
    }
}

/// A sampling temperature, 0–2 as OpenAI takes it.
pub fn temperature(value: Option<f32>) -> Result<Option<f32>, OpenAiError> {
    match value {
        Some(t) if !(0.0..=2.0).contains(&t) => Err(OpenAiError::invalid(
            "temperature",
            format!("Invalid 'temperature': {t}. Expected a value between 0 and 2."),
        )),
        other => Ok(other),
    }
}

/// A token limit of at least 1.
pub fn max_tokens(param: &str, value: Option<i64>) -> Result<Option<u32>, OpenAiError> {
    match value {
        None => Ok(None),
        Some(n) => u32::try_from(n)
            .ok()
            .filter(|n| *n >= 1)
            .map(Some)
            .ok_or_else(|| {
                OpenAiError::invalid(
                    param,
                    format!("Invalid '{param}': {n}. Expected at least 1."),
                )
            }),
    }
}

/// Tools the client would run: confab agents answer in text and call none, so asking for them
/// is refused rather than silently ignored (an agent framework would wait for a call forever).
pub fn no_tools(tools: Option<&Vec<serde_json::Value>>) -> Result<(), OpenAiError> {
    match tools {
        Some(tools) if !tools.is_empty() => Err(OpenAiError::invalid(
            "tools",
            "confab agents do not call client tools; send the request without `tools`.",
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_readable_and_safe() {
        assert_eq!(slug("My chats"), "my-chats");
        assert_eq!(slug("  Ünïcode & Co.  "), "n-code-co");
        assert_eq!(slug("***"), "unnamed");
    }

    #[test]
    fn a_new_conversation_keeps_the_clients_history_a_continued_one_does_not() {
        let mut incoming = Incoming::default();
        let text = |t: &str| Content::Text(t.into());
        incoming
            .push("m[0]", "system", Some(&text("Be brief.")))
            .unwrap();
        incoming.push("m[1]", "user", Some(&text("Hi"))).unwrap();
        incoming
            .push("m[2]", "assistant", Some(&text("Hello!")))
            .unwrap();
        incoming
            .push("m[3]", "user", Some(&text("And now?")))
            .unwrap();
        let (message, turn) = std::mem::take(&mut incoming)
            .into_turn("messages", false)
            .unwrap();
        assert_eq!(message, "And now?");
        assert_eq!(turn.earlier.len(), 2);
        assert_eq!(turn.instructions.as_deref(), Some("Be brief."));

        incoming.push("m[0]", "user", Some(&text("Hi"))).unwrap();
        incoming.push("m[1]", "user", Some(&text("Again"))).unwrap();
        let (message, turn) = incoming.into_turn("messages", true).unwrap();
        assert_eq!((message.as_str(), turn.earlier.len()), ("Again", 0));

        let mut ends_with_assistant = Incoming::default();
        ends_with_assistant
            .push("m[0]", "assistant", Some(&text("Hi")))
            .unwrap();
        assert_eq!(
            ends_with_assistant
                .into_turn("messages", false)
                .unwrap_err()
                .param
                .as_deref(),
            Some("messages")
        );
        assert_eq!(
            Incoming::default()
                .push("m[0]", "assistant", Some(&text("a\0b")))
                .unwrap_err()
                .param
                .as_deref(),
            Some("m[0].content")
        );
        let image = Content::Parts(vec![ContentPart {
            kind: "image_url".into(),
            text: None,
        }]);
        assert_eq!(
            Incoming::default()
                .push("m[0]", "user", Some(&image))
                .unwrap_err()
                .param
                .as_deref(),
            Some("m[0].content[0]")
        );
    }
}
