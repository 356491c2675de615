-- The demo table of the docker-compose cluster, created in each site's database when its PostgreSQL
-- initialises an empty data volume (docker-compose.yml mounts this file into /docker-entrypoint-initdb.d).
-- Every site has the same table, so a row written at one site appears at the others:
--
--   docker-compose exec postgres-paris psql -U postgres paris -c "INSERT INTO notes (body) VALUES ('hello from paris')"
--   docker-compose exec postgres-london psql -U postgres london -c "SELECT * FROM notes"
--
-- Keys are UUIDs so that rows written at different sites never collide; written_at records where the
-- row was written (the replicated row carries it unchanged).
CREATE TABLE IF NOT EXISTS public.notes (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  body text NOT NULL,
  written_at text NOT NULL DEFAULT current_database(),
  created_at timestamptz NOT NULL DEFAULT now()
);
