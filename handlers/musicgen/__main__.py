from handlers.musicgen.handler import main

main()
