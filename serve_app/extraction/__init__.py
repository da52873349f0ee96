"""Reading bank, place and branch out of a query: rules/gazetteer first, a fine-tuned model where asked."""
