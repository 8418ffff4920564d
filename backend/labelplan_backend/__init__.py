"""labelplan_backend: the Label Studio ML backend (label-studio-ml model) that scores tasks for labelplan."""
