DROP TABLE prompt_versions;
DROP TABLE prompts;
DROP TABLE agents;
DROP TABLE projects;
DROP TABLE users;
