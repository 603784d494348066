from handlers.voxcpm.handler import main

main()
