"""Console helpers and report storage shared by the commands' renderers."""
