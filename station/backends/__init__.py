"""Model backends behind one interface (`base`): hf, scripted, openai."""
