"""Operations that combine the authority (keys, files) with the store."""
