"""SmartThings locks with the lockCodes capability, through SmartThings' cloud API."""
