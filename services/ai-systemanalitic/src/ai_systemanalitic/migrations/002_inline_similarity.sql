-- The search counts shared trigrams inline (knowledge.py, _SEARCH): calling this SQL function for
-- every candidate pair cost about half of each search.
DROP FUNCTION knowledge_similarity(text[], text[]);
