"""Reports: every performance metric by any dimension, over the event lake."""
