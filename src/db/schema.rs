// @generated automatically by Diesel CLI.

diesel::table! {
    agents (id) {
        id -> Uuid,
        project_id -> Uuid,
        name -> Text,
        description -> Text,
        provider -> Text,
        model -> Text,
        temperature -> Nullable<Float4>,
        max_output_tokens -> Nullable<Int4>,
        is_default -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    projects (id) {
        id -> Uuid,
        owner_id -> Uuid,
        name -> Text,
        description -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    prompt_versions (id) {
        id -> Uuid,
        prompt_id -> Uuid,
        version -> Int4,
        title -> Text,
        content -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    prompts (id) {
        id -> Uuid,
        project_id -> Nullable<Uuid>,
        agent_id -> Nullable<Uuid>,
        title -> Text,
        position -> Int4,
        enabled -> Bool,
        current_version -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    users (id) {
        id -> Uuid,
        email -> Text,
        password_hash -> Text,
        display_name -> Text,
        is_admin -> Bool,
        disabled_at -> Nullable<Timestamptz>,
        session_epoch -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::joinable!(agents -> projects (project_id));
diesel::joinable!(projects -> users (owner_id));
diesel::joinable!(prompt_versions -> prompts (prompt_id));
diesel::joinable!(prompts -> agents (agent_id));
diesel::joinable!(prompts -> projects (project_id));

diesel::allow_tables_to_appear_in_same_query!(agents, projects, prompt_versions, prompts, users,);
