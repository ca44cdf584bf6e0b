-- The analyst's knowledge base: documents found with PostgreSQL's own full-text search.
--
-- Words are stemmed with the built-in `russian` configuration, which stems Cyrillic words with
-- the Russian Snowball stemmer and Latin words with the English one, so one vector serves both
-- languages. Typos and word forms the stemmer does not join (кошелек/кошельк, authoris/author)
-- are matched through a lexicon of the base's own stems compared by trigrams, built here in
-- plain SQL because the pg_trgm extension is not available everywhere (the embedded pgserver
-- build used by `make run` and the tests lacks it).

CREATE FUNCTION knowledge_search_vector(title text, tags text[], body text) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT setweight(to_tsvector('russian'::regconfig, coalesce(title, '')), 'A')
        || setweight(to_tsvector('russian'::regconfig, coalesce(array_to_string(tags, ' '), '')), 'B')
        || setweight(to_tsvector('russian'::regconfig, coalesce(body, '')), 'D')
$$;

-- The distinct three-letter pieces of a word, padded as pg_trgm pads them ("  w", " wo", ..., "d ").
CREATE FUNCTION knowledge_trigrams(word text) RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(DISTINCT substr(padded, i, 3)), '{}')
    FROM (SELECT '  ' || word || ' ' AS padded) AS w, generate_series(1, length(padded) - 2) AS i
$$;

-- Shared trigrams over all trigrams of the two words (pg_trgm's similarity), 0..1.
CREATE FUNCTION knowledge_similarity(a text[], b text[]) RETURNS real
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN shared = 0 THEN 0 ELSE shared::real / (cardinality(a) + cardinality(b) - shared) END
    FROM (SELECT count(*) AS shared FROM (SELECT unnest(a) INTERSECT SELECT unnest(b)) AS common) AS s
$$;

CREATE TABLE knowledge_documents (
    id          bigserial PRIMARY KEY,
    url         text NOT NULL UNIQUE,           -- the document's identity
    title       text NOT NULL,
    tags        text[] NOT NULL DEFAULT '{}',
    body        text NOT NULL,
    summary     text NOT NULL DEFAULT '',       -- the first paragraph, or the front matter's summary
    links       text[] NOT NULL DEFAULT '{}',   -- URLs the text mentions; answers may cite them too
    origin      text NOT NULL CHECK (origin IN ('folder', 'api')),
    path        text,                           -- the file it came from, relative to the folder
    checksum    text NOT NULL,                  -- of title, url, tags, summary and body: reloads skip unchanged files
    search      tsvector GENERATED ALWAYS AS (knowledge_search_vector(title, tags, body)) STORED,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX knowledge_documents_search ON knowledge_documents USING gin (search);
CREATE INDEX knowledge_documents_links ON knowledge_documents USING gin (links);

-- Every stem in the base, how many documents hold it (for its weight) and its trigrams (for typos).
-- Rebuilt in the same transaction as every change to the documents.
CREATE TABLE knowledge_lexemes (
    lexeme     text PRIMARY KEY,
    documents  integer NOT NULL,
    trigrams   text[] NOT NULL
);
CREATE INDEX knowledge_lexemes_trigrams ON knowledge_lexemes USING gin (trigrams);
