"""Reading a study back: rows and views, formats, the plot, seed noise. Never writes to the storage."""
