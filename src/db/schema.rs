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
        revision -> Int8,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Uuid,
        user_id -> Uuid,
        name -> Text,
        prefix -> Text,
        key_hash -> Bytea,
        scope -> Text,
        created_at -> Timestamptz,
        last_used_at -> Nullable<Timestamptz>,
        expires_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    conversations (id) {
        id -> Uuid,
        agent_id -> Uuid,
        user_id -> Uuid,
        title -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    file_chunks (id) {
        id -> Int8,
        file_id -> Uuid,
        project_id -> Uuid,
        position -> Int4,
        text -> Text,
    }
}

diesel::table! {
    files (id) {
        id -> Uuid,
        project_id -> Uuid,
        filename -> Text,
        content_type -> Text,
        bytes -> Int8,
        sha256 -> Text,
        provider_file_id -> Nullable<Text>,
        status -> Text,
        created_at -> Timestamptz,
        provider -> Nullable<Text>,
        index_status -> Nullable<Text>,
        index_error -> Nullable<Text>,
        passages -> Int4,
    }
}

diesel::table! {
    messages (id) {
        id -> Uuid,
        conversation_id -> Uuid,
        role -> Text,
        content -> Text,
        status -> Text,
        error -> Nullable<Text>,
        provider -> Nullable<Text>,
        model -> Nullable<Text>,
        prompt_versions -> Jsonb,
        input_tokens -> Nullable<Int4>,
        output_tokens -> Nullable<Int4>,
        ttft_ms -> Nullable<Int4>,
        duration_ms -> Nullable<Int4>,
        created_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
        error_detail -> Nullable<Text>,
        attachments -> Jsonb,
        context -> Text,
        citations -> Jsonb,
        html -> Nullable<Text>,
        html_renderer -> Nullable<Text>,
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
        knowledge -> Bool,
        vector_store_provider -> Nullable<Text>,
        vector_store_id -> Nullable<Text>,
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
        email_key -> Text,
    }
}

diesel::table! {
    sessions (id) {
        id -> Uuid,
        user_id -> Uuid,
        user_agent -> Text,
        created_at -> Timestamptz,
        last_used_at -> Timestamptz,
    }
}

diesel::joinable!(agents -> projects (project_id));
diesel::joinable!(api_keys -> users (user_id));
diesel::joinable!(conversations -> agents (agent_id));
diesel::joinable!(conversations -> users (user_id));
diesel::joinable!(file_chunks -> files (file_id));
diesel::joinable!(files -> projects (project_id));
diesel::joinable!(messages -> conversations (conversation_id));
diesel::joinable!(projects -> users (owner_id));
diesel::joinable!(prompt_versions -> prompts (prompt_id));
diesel::joinable!(prompts -> agents (agent_id));
diesel::joinable!(prompts -> projects (project_id));
diesel::joinable!(sessions -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    agents,
    api_keys,
    conversations,
    file_chunks,
    files,
    messages,
    projects,
    prompt_versions,
    prompts,
    sessions,
    users,
);
