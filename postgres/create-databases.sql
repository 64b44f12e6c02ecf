-- Run by the PostgreSQL image of docker-compose.yml once, when it initializes
-- an empty data volume (as POSTGRES_USER, who owns what it creates): one
-- database per service, since each runs its own migrations and keeps its own
-- migration history.
CREATE DATABASE metadata;
CREATE DATABASE rating;
