"""Test helpers of arbframe-fx-forex (a fake quotation server). Not part of the installed wheel: available in a
source checkout (editable install), where the plugin's tests run."""
